"""The export step (installed as ``edge_geoloc.export``): PyTorch -> ONNX with parity gates, ONNX -> TensorRT."""
