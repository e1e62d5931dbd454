"""edge-geoloc: know where a drone or car is by matching its camera against geo-referenced satellite imagery.

Subpackages: ``geo`` (geodesy, rasters), ``sim`` (synthetic world), ``data`` (dataset readers), ``models``
(retrieval and heat-map localizer), ``train`` (losses, trainers, adaptation), ``evaluate`` (metrics),
``export`` (ONNX, TensorRT), ``runtime`` (backends, tile index, pipeline), ``fusion`` (EKF), ``sensors``
(GNSS), ``fieldlog`` (MCAP logging), ``interop`` (ROS message conversions without ROS).
Nothing is imported here: importing a subpackage costs only what it needs.
"""

__version__ = "0.1.0"
