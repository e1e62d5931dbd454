"""``sensor_msgs/Image`` and ``sensor_msgs/CompressedImage`` <-> ``(H, W, 3) uint8`` RGB and ``CameraFrame``.

Raw images: 8-bit encodings ``rgb8``, ``bgr8``, ``rgba8``, ``bgra8``, ``mono8`` (rows may be padded:
``step >= width * channels``). Compressed images: anything OpenCV decodes (JPEG, PNG); ``compressedDepth`` is
refused. Bayer and 16-bit images are refused with a message saying to debayer / convert upstream.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_geoloc.interop.factory import ConversionError, MessageFactory, as_uint8_array
from edge_geoloc.interop.stamps import header_stamp_s, make_header
from edge_geoloc.types import CameraFrame

# encoding -> (channels, channel order of the buffer)
RAW_ENCODINGS: dict[str, tuple[int, str]] = {
    "rgb8": (3, "rgb"), "bgr8": (3, "bgr"), "rgba8": (4, "rgba"), "bgra8": (4, "bgra"), "mono8": (1, "mono"),
    "8UC3": (3, "bgr"), "8UC1": (1, "mono"),  # OpenCV-style names, as cv_bridge writes them
}


def image_msg_to_rgb(msg: Any) -> np.ndarray:
    """``(H, W, 3) uint8`` RGB pixels of a ``sensor_msgs/Image``."""
    encoding = str(msg.encoding)
    if encoding not in RAW_ENCODINGS:
        raise ConversionError(
            f"unsupported image encoding {encoding!r}; supported: {', '.join(RAW_ENCODINGS)} "
            "(debayer with image_proc or convert 16-bit images upstream)"
        )
    channels, order = RAW_ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    data = as_uint8_array(msg.data)
    if height <= 0 or width <= 0 or step < width * channels or data.size < height * step:
        raise ConversionError(
            f"malformed Image: {height}x{width} {encoding}, step {step}, {data.size} bytes "
            f"(need step >= {width * channels} and height*step bytes)"
        )
    pixels = data[: height * step].reshape(height, step)[:, : width * channels].reshape(height, width, channels)
    return _to_rgb(pixels, order)


def _to_rgb(pixels: np.ndarray, order: str) -> np.ndarray:
    """An owned, writable RGB array: the frame must not alias the message buffer (read-only, reused)."""
    if order == "mono":
        return np.repeat(pixels, 3, axis=2)
    rgb = np.ascontiguousarray(pixels[..., 2::-1] if order.startswith("bgr") else pixels[..., :3])
    return rgb if rgb.flags.owndata else rgb.copy()


def compressed_msg_to_rgb(msg: Any) -> np.ndarray:
    """``(H, W, 3) uint8`` RGB pixels of a ``sensor_msgs/CompressedImage`` (JPEG, PNG)."""
    import cv2

    fmt = str(msg.format)
    if "compresseddepth" in fmt.lower().replace(" ", ""):
        raise ConversionError(f"CompressedImage format {fmt!r} is a depth image; the pipeline needs colour images")
    data = as_uint8_array(msg.data)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None:
        raise ConversionError(f"cannot decode CompressedImage ({data.size} bytes, format {fmt!r}); expected JPEG/PNG")
    return np.ascontiguousarray(bgr[..., ::-1])


def any_image_msg_to_rgb(msg: Any) -> np.ndarray:
    """RGB pixels of either image message (raw ones have ``encoding``, compressed ones ``format``)."""
    if hasattr(msg, "encoding"):
        return image_msg_to_rgb(msg)
    if hasattr(msg, "format"):
        return compressed_msg_to_rgb(msg)
    raise ConversionError(f"{type(msg).__name__} is neither a sensor_msgs/Image nor a CompressedImage")


def image_msg_to_frame(
    msg: Any, heading_rad: float | None = None, altitude_agl_m: float | None = None
) -> CameraFrame:
    """A :class:`CameraFrame` from an Image or CompressedImage: header stamp and frame id are kept."""
    return CameraFrame(
        stamp_s=header_stamp_s(msg),
        image_rgb=any_image_msg_to_rgb(msg),
        frame_id=str(msg.header.frame_id),
        heading_rad=heading_rad,
        altitude_agl_m=altitude_agl_m,
    )


def rgb_to_image_msg(factory: MessageFactory, rgb: np.ndarray, stamp_s: float, frame_id: str,
                     encoding: str = "rgb8") -> Any:
    """A ``sensor_msgs/Image`` (``rgb8`` or ``bgr8``, unpadded rows) from RGB pixels."""
    _check_rgb(rgb)
    if encoding not in ("rgb8", "bgr8"):
        raise ConversionError(f"can only write rgb8 or bgr8 images, got {encoding!r}")
    pixels = rgb if encoding == "rgb8" else rgb[..., ::-1]
    height, width = rgb.shape[:2]
    return factory.new(
        "sensor_msgs/msg/Image", header=make_header(factory, stamp_s, frame_id), height=height, width=width,
        encoding=encoding, is_bigendian=0, step=width * 3,
        data=factory.uint8_array(np.ascontiguousarray(pixels).tobytes()),
    )


def rgb_to_compressed_msg(factory: MessageFactory, rgb: np.ndarray, stamp_s: float, frame_id: str,
                          fmt: str = "jpeg", jpeg_quality: int = 90) -> Any:
    """A ``sensor_msgs/CompressedImage`` (``jpeg`` or ``png``) from RGB pixels."""
    import cv2

    _check_rgb(rgb)
    if fmt not in ("jpeg", "png"):
        raise ConversionError(f"CompressedImage format must be 'jpeg' or 'png', got {fmt!r}")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if fmt == "jpeg" else []
    ok, buf = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", np.ascontiguousarray(rgb[..., ::-1]), params)
    if not ok:
        raise ConversionError(f"OpenCV could not encode a {rgb.shape} image as {fmt}")
    return encoded_to_compressed_msg(factory, buf.tobytes(), stamp_s, frame_id, fmt)


def encoded_to_compressed_msg(factory: MessageFactory, data: bytes, stamp_s: float, frame_id: str,
                              fmt: str = "jpeg") -> Any:
    """A ``sensor_msgs/CompressedImage`` around already-encoded bytes (kept byte for byte, no re-encoding)."""
    return factory.new("sensor_msgs/msg/CompressedImage", header=make_header(factory, stamp_s, frame_id),
                       format=fmt, data=factory.uint8_array(data))


def _check_rgb(rgb: np.ndarray) -> None:
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ConversionError(f"expected an (H, W, 3) uint8 RGB array, got {getattr(rgb, 'shape', rgb)!r}")
