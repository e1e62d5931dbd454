"""The learned map matcher deployed like the other models: ONNX export with a dynamic height and width gated at
two sizes, a sidecar that declares its geometry, the torch-free features adapter the runtime's global search
runs on, and the ``global_search`` section of the runtime config."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
import torch
from edge_geoloc.export.config import ExportConfig, ParityConfig
from edge_geoloc.export.onnx_export import export_model
from edge_geoloc.export.parity import ParityError
from edge_geoloc.export.sidecar import sidecar_path
from export_tiny_models import TinyRetrieval
from test_export_registry import _one_torch_thread  # noqa: F401  (autouse: one torch thread per test)

from edge_geoloc.artifacts import ArtifactError
from edge_geoloc.config import load_config
from edge_geoloc.geo.raster import PatchGeoref, write_geotiff
from edge_geoloc.models import create_model
from edge_geoloc.models.map_matcher import MapMatcher
from edge_geoloc.runtime.backends import load_backend
from edge_geoloc.runtime.classical import NccMatcher
from edge_geoloc.runtime.config import GlobalSearchConfig, RuntimeConfig
from edge_geoloc.runtime.learned_matcher import (
    BackendFeatures,
    LearnedMatcher,
    LearnedMatcherConfig,
    block_windows,
    load_matcher_features,
)
from edge_geoloc.runtime.map_search import build_map_matcher, read_map

GATE = ExportConfig(simplify=False, check_tensorrt=False, parity=ParityConfig(random_samples=1, real_samples=3))
CHANNELS = [8, 16, 32]
UTM_WEST, UTM_NORTH = 500_000.0, 4_000_000.0  # upper-left corner of the test map (EPSG:32633)


@pytest.fixture(scope="module")
def matcher():
    torch.manual_seed(0)
    return create_model("map_matcher_micro", channels=CHANNELS).eval()


@pytest.fixture(scope="module")
def matcher_onnx(matcher, tmp_path_factory):
    return export_model(matcher, tmp_path_factory.mktemp("matcher") / "matcher.onnx", GATE)


def pixel_passing_matcher() -> MapMatcher:
    """A matcher whose features are the normalised pixels every 4 px (signed: ReLU(x) - ReLU(-x)).

    Untrained random weights give features dominated by a constant (every window scores ~1), so a search test
    needs informative features; these are exact, so a frame cut on the 4 px grid scores 1 at its own place.
    """
    model = create_model("map_matcher_micro", channels=CHANNELS).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        first = model.features[0][0].weight  # (8, 3, 3, 3): +x into 0..2, -x into 3..5
        for k in range(3):
            first[k, k, 1, 1], first[3 + k, k, 1, 1] = 1.0, -1.0
        for stage in model.features:
            for conv in (stage[0], stage[2]):
                if conv is not model.features[0][0]:
                    for k in range(6):
                        conv.weight[k, k, 1, 1] = 1.0  # the centre tap passes the 6 channels on
        for k in range(3):
            model.proj.weight[k, k, 0, 0], model.proj.weight[k, 3 + k, 0, 0] = 1.0, -1.0
    return model


@pytest.fixture(scope="module")
def pixel_onnx(tmp_path_factory):
    return export_model(pixel_passing_matcher(), tmp_path_factory.mktemp("pixels") / "pixels.onnx", GATE)


def texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth random RGB texture: every 80 m window looks different."""
    noise = np.random.default_rng(seed).uniform(0, 255, (h, w, 3)).astype(np.float32)
    return np.clip(cv2.GaussianBlur(noise, (0, 0), 2.0) * 3 - 255, 0, 255).astype(np.uint8)


def test_sidecar_declares_a_dynamic_size_and_the_matcher_geometry(matcher_onnx):
    side = json.loads(sidecar_path(matcher_onnx.onnx_path).read_text())
    assert side["kind"] == "matcher" and side["model"]["name"] == "map_matcher_micro"
    assert side["inputs"] == [{"name": "image", "shape": [1, 3, "height", "width"], "dtype": "float32"}]
    assert side["outputs"] == [{"name": "features", "shape": [1, 32, "height/4", "width/4"], "dtype": "float32"}]
    prep = side["preprocessing"]["image"]
    assert prep["size_hw"] == [80, 80] and prep["m_per_px"] == 1.0 and prep["stride"] == 4
    assert (prep["ground_size_m"], prep["tile_size_m"], prep["search_radius_m"]) == (80.0, 120.0, 30.0)
    assert prep["alignment"] == "north_up" and prep["camera"] == "nadir"
    assert prep["mean"] == pytest.approx([0.485, 0.456, 0.406]) and prep["std"] == pytest.approx([0.229, 0.224, 0.225])
    parity = side["parity"]
    # one random sample at the frame size and one at the map block size, then 3 (frame, block) pairs
    assert parity["passed"] and parity["samples"] == 1 + 1 + 2 * 3 and parity["task"]["agreement"] == 1.0


@pytest.mark.parametrize("hw", [(80, 80), (256, 192), (64, 96)])
def test_onnx_features_equal_pytorch_at_any_size(matcher, matcher_onnx, hw):
    x = np.random.default_rng(hw[1]).standard_normal((1, 3, *hw)).astype(np.float32)
    onnx_features = load_backend(matcher_onnx.onnx_path).run({"image": x})["features"]
    with torch.no_grad():
        torch_features = matcher(torch.from_numpy(x)).numpy()
    assert onnx_features.shape == (1, 32, hw[0] // 4, hw[1] // 4)
    np.testing.assert_allclose(onnx_features, torch_features, atol=1e-5, rtol=1e-4)


class SizeBakedMatcher(MapMatcher):
    """Reads the input width as a Python number: tracing bakes 80 in, so ONNX differs at any other width."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return super().forward(images) * (float(images.shape[-1]) / 80.0)


def test_the_second_size_catches_a_size_baked_in_at_tracing(tmp_path):
    target = tmp_path / "baked.onnx"
    model = SizeBakedMatcher(channels=tuple(CHANNELS)).eval()
    model.model_name = "baked"
    with pytest.raises(ParityError, match="failed the parity gate: features"):
        export_model(model, target, GATE)
    assert not target.exists()


def test_learned_matcher_over_the_onnx_adapter_finds_a_frame_cut_from_the_map(pixel_onnx):
    ortho = texture(240, 240)
    features = load_matcher_features(pixel_onnx.onnx_path, "onnxruntime")
    config = LearnedMatcherConfig.from_sidecar(features.backend.sidecar)
    assert (config.ground_size_m, config.m_per_px, config.stride) == (80.0, 1.0, 4)
    searcher = LearnedMatcher(ortho, -120.0, 120.0, 1.0, features, config)
    # an 80 m nadir frame, north-up (heading 0), centred on local (east, north) = (-12, 40): rows 40..120,
    # cols 68..148; 40 m above ground with a 90 deg lens sees exactly 80 m
    frame = ortho[40:120, 68:148]
    match = searcher.locate(searcher.prepare(frame, heading_rad=0.0, altitude_agl_m=40.0, hfov_deg=90.0))
    assert (match.east_m, match.north_m) == pytest.approx((-12.0, 40.0))
    assert match.score == pytest.approx(1.0, abs=1e-4) and match.second_score < 0.9
    # the same answer as the PyTorch model behind the same callable contract
    reference = LearnedMatcher(ortho, -120.0, 120.0, 1.0, _torch_features(pixel_passing_matcher(), features), config)
    assert reference.locate(reference.prepare_aligned(frame)) == pytest.approx(match, abs=1e-3)


def _torch_features(model: MapMatcher, adapter: BackendFeatures):
    def features(image: np.ndarray) -> np.ndarray:
        from edge_geoloc.runtime.backends.base import normalise_image

        with torch.no_grad():
            return model(torch.from_numpy(normalise_image(image, adapter.prep)))[0].numpy()

    return features


def test_blockwise_features_of_a_large_map_equal_one_pass(matcher_onnx):
    whole = load_matcher_features(matcher_onnx.onnx_path)
    assert whole.prep.receptive_field_px == 12  # measured at export: 3x3 convs at strides 1, 1, 2, 1, 2, 1
    blocks = BackendFeatures(whole.backend, max_block_hw=(96, 128))  # as a TensorRT profile would bound it
    image = texture(240, 200, seed=5)
    np.testing.assert_allclose(blocks(image), whole(image), rtol=1e-4, atol=1e-5)
    assert blocks.margin_px == 16 and len(block_windows(240, 96, 16)) == 4


def test_features_adapter_refuses_other_models_and_incomplete_sidecars(matcher_onnx, tmp_path):
    retrieval = export_model(TinyRetrieval(), tmp_path / "r.onnx", GATE).onnx_path
    with pytest.raises(ArtifactError, match="is a 'retrieval' model.*needs a map matcher"):
        load_matcher_features(retrieval)
    side = json.loads(sidecar_path(matcher_onnx.onnx_path).read_text())
    del side["preprocessing"]["image"]["stride"]
    with pytest.raises(ArtifactError, match="lacks stride"):
        LearnedMatcherConfig.from_sidecar(side)
    copy = tmp_path / "m.onnx"
    copy.write_bytes(matcher_onnx.onnx_path.read_bytes())
    with pytest.raises(ArtifactError, match="missing sidecar m.json"):
        load_matcher_features(copy)
    sidecar_path(copy).write_text(json.dumps(side))
    with pytest.raises(ArtifactError, match="lacks stride"):
        load_matcher_features(copy)
    features = load_matcher_features(matcher_onnx.onnx_path)
    with pytest.raises(ValueError, match="multiples of its stride 4"):
        features(texture(82, 80))


def test_runtime_config_global_search_section():
    cfg = load_config(RuntimeConfig, "configs/runtime.yaml")
    assert cfg.global_search == GlobalSearchConfig()  # the shipped file says what the defaults are
    cfg = load_config(RuntimeConfig, "configs/runtime.yaml", ["global_search.kind=matcher",
                                                              "global_search.model=models/matcher.onnx",
                                                              "global_search.ncc.ground_size_m=48"])
    assert (cfg.global_search.kind, cfg.global_search.model, cfg.global_search.ncc.ground_size_m) == (
        "matcher", "models/matcher.onnx", 48.0)
    with pytest.raises(ValueError, match="needs global_search.model"):
        GlobalSearchConfig(kind="matcher")
    with pytest.raises(ValueError, match="global_search.kind must be one of"):
        GlobalSearchConfig(kind="faiss")  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def map_tif(tmp_path_factory):
    """A 240 m x 320 m map at 0.5 m/px in UTM: the matcher (1 m/px) resamples it."""
    image = texture(480, 640, seed=3)
    georef = PatchGeoref(32633, (0.5, 0.0, UTM_WEST, 0.0, -0.5, UTM_NORTH), 480, 640)
    return write_geotiff(tmp_path_factory.mktemp("map") / "map.tif", image, georef), image


def test_map_matcher_builder_reads_the_raster_and_builds_each_kind(map_tif, pixel_onnx):
    path, image = map_tif
    whole = read_map(path)
    assert whole.image.shape == (480, 640, 3) and (whole.west_m, whole.north_m, whole.m_per_px) == (
        UTM_WEST, UTM_NORTH, 0.5)
    with pytest.raises(ValueError, match="does not search a map image"):
        build_map_matcher(GlobalSearchConfig(), path)  # retrieval: the encoder and the tile index do
    ncc = build_map_matcher(GlobalSearchConfig(kind="ncc"), path)
    learned = build_map_matcher(GlobalSearchConfig(kind="matcher", model=str(pixel_onnx.onnx_path)), path)
    assert isinstance(ncc, NccMatcher) and isinstance(learned, LearnedMatcher)
    # a nadir frame of 80 m centred 100 m east and 60 m south of the corner, seen at heading 0
    frame = cv2.resize(image[120 - 80:120 + 80, 200 - 80:200 + 80], (80, 80), interpolation=cv2.INTER_AREA)
    for searcher in (ncc, learned):
        match = searcher.locate(searcher.prepare(frame, 0.0, 40.0, 90.0))
        assert math.hypot(match.east_m - UTM_WEST - 100.0, match.north_m - UTM_NORTH + 60.0) <= 4.0, searcher


def test_cli_exports_a_trained_style_checkpoint_and_plans_its_engine(matcher, tmp_path, capsys):
    from edge_geoloc.export import cli, engine_cli

    from edge_geoloc.models.checkpoint import save_model

    ckpt = save_model(matcher, tmp_path / "final.safetensors", extra={"steps": 0})
    out = tmp_path / "models" / "matcher.onnx"
    assert cli.main(["--checkpoint", str(ckpt), "--out", str(out), "--no-simplify", "--set",
                     "parity.random_samples=1", "--set", "parity.real_samples=3", "--set",
                     "parity.matcher_block_hw=[128,96]"]) == 0
    side = json.loads(sidecar_path(out).read_text())
    assert side["kind"] == "matcher" and side["source"]["checkpoint"] == "final.safetensors"
    assert side["preprocessing"]["image"]["stride"] == 4 and side["tensorrt_audit"]["ok"]
    capsys.readouterr()
    assert engine_cli.main([str(out), "--dry-run", "--max-hw", "2048,1536"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["profiles"]["image"] == [[1, 3, 32, 32], [1, 3, 80, 80], [1, 3, 2048, 1536]]


def test_an_exported_panorama_matcher_is_a_cars_localizer_and_a_nadir_one_is_refused(matcher_onnx, tmp_path):
    from edge_geoloc.runtime.config import PipelineConfig
    from edge_geoloc.runtime.learned_ground import LearnedBevLocalizer
    from edge_geoloc.runtime.pipeline import localizer_for

    torch.manual_seed(0)
    bev_matcher = create_model("map_matcher_micro", channels=CHANNELS, m_per_px=0.5, query_ground_size_m=32.0,
                               tile_size_m=64.0, search_radius_m=16.0, query_camera="panorama").eval()
    path = export_model(bev_matcher, tmp_path / "bev.onnx", GATE).onnx_path
    backend = load_backend(path, kind="onnxruntime")
    assert backend.sidecar["preprocessing"]["image"]["camera"] == "panorama"
    localizer = localizer_for(backend, PipelineConfig(aerial_size_m=48.0, ground_heading_bins=8))
    assert isinstance(localizer, LearnedBevLocalizer) and not localizer.alignment.north_up
    pano = np.random.default_rng(0).integers(0, 255, (128, 256, 3), dtype=np.uint8)
    heat = localizer.locate(pano, np.random.default_rng(1).integers(0, 255, (96, 96, 3), dtype=np.uint8))
    assert heat.shape == (96, 96) and heat.sum() == pytest.approx(1.0)
    assert localizer.orientation_at(48.0, 48.0) in localizer.headings
    assert localizer_for(backend, PipelineConfig()).alignment.north_up  # 0 bins: the vehicle's heading is needed
    front = localizer_for(backend, PipelineConfig(ground_camera="pinhole")).alignment  # a front camera's frames
    assert front.query_kind == "ground_pinhole" and front.pinhole_pano_wh == (256, 128) and front.north_up
    with pytest.raises(ValueError, match="panorama BEVs"):
        localizer_for(load_backend(matcher_onnx.onnx_path, kind="onnxruntime"), PipelineConfig())
