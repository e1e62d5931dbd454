from dataclasses import dataclass, field
from typing import Literal

import pytest

from edge_geoloc.config import ConfigError, from_dict, load_config, parse_overrides, save_config


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: Literal["cosine", "constant"] = "cosine"


@dataclass(frozen=True)
class JobConfig:
    name: str = "job"
    epochs: int = 1
    seed: int | None = None
    optim: OptimConfig = field(default_factory=OptimConfig)


def test_yaml_then_overrides_win(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 3\noptim:\n  lr: 0.01\n")
    cfg = load_config(JobConfig, path, ["optim.lr=3e-4", "seed=7", "optim.betas=[0.8, 0.9]"])
    assert cfg.epochs == 3 and cfg.seed == 7
    assert cfg.optim.lr == pytest.approx(3e-4) and cfg.optim.betas == (0.8, 0.9)


def test_unknown_key_is_rejected_with_valid_keys_listed():
    with pytest.raises(ConfigError, match=r"optim\.lrr.*valid keys: betas, lr, schedule"):
        from_dict(JobConfig, {"optim": {"lrr": 1}})


@pytest.mark.parametrize("override, message", [
    ("epochs=two", "epochs: expected int"),
    ("optim.schedule=linear", "not one of"),
    ("optim.betas=[1]", "expected 2 values"),
    ("noequals", "key=value"),
])
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(JobConfig, None, [override])


def test_int_is_accepted_for_float_and_resolved_config_round_trips(tmp_path):
    cfg = load_config(JobConfig, None, ["optim.lr=1"])
    assert isinstance(cfg.optim.lr, float)
    saved = save_config(cfg, tmp_path / "run" / "config.yaml")
    assert load_config(JobConfig, saved) == cfg


def test_parse_overrides_nests_dotted_keys():
    assert parse_overrides(["a.b.c=1", "a.d=x"]) == {"a": {"b": {"c": 1}, "d": "x"}}
