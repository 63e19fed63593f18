"""Configuration: precedence of sources, type conversion, validation messages."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from semcache.quality.policy import HitPolicy
from semcache.runtime.config import ConfigError, EmbedderConfig, RouterConfig, ShardConfig


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    EmbedderConfig.add_arguments(parser)
    return parser.parse_args(argv)


def test_defaults_match_the_documented_ports() -> None:
    config = EmbedderConfig.load(parse([]), environ={})
    assert (config.port, config.metrics_port, config.workers) == (50053, 9102, 2)


def test_flags_beat_environment_beat_file(tmp_path: Path) -> None:
    file = tmp_path / "semcache.toml"
    file.write_text("[embedder]\nport = 6001\nworkers = 3\nmax_wait_ms = 1.5\n")
    env = {"SEMCACHE_CONFIG": str(file), "SEMCACHE_EMBEDDER_PORT": "6002"}
    config = EmbedderConfig.load(parse(["--port", "6003"]), environ=env)
    assert (config.port, config.workers, config.max_wait_ms) == (6003, 3, 1.5)
    assert EmbedderConfig.load(parse([]), environ=env).port == 6002


def test_optional_path_field(tmp_path: Path) -> None:
    config = EmbedderConfig.load(parse(["--model-dir", str(tmp_path)]), environ={})
    assert config.model_dir == tmp_path


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--port", "abc"], {}, "port (--port): invalid literal"),
        (["--port", "70000"], {}, "port: must be in [0, 65535], got 70000"),
        ([], {"SEMCACHE_EMBEDDER_WORKERS": "0"}, "workers: must be >= 1, got 0"),
        (["--max-wait-ms", "nan"], {}, "max_wait_ms (--max-wait-ms): not a finite number"),
        (["--log-level", "LOUD"], {}, "log_level: must be one of"),
        (["--max-queue", "10"], {}, "max_queue: must be >= max_texts_per_call"),
        (
            [],
            {"SEMCACHE_EMBEDDER_TLS_CLIENTAUTH": "true"},
            "unknown setting(s) in the environment: SEMCACHE_EMBEDDER_TLS_CLIENTAUTH",
        ),
        ([], {"SEMCACHE_EMBEDDER_HEALTH_PORT": "-2"}, "health_port: must be in [-1, 65535]"),
    ],
)
def test_bad_values_name_the_field_and_source(argv, env, message) -> None:
    with pytest.raises(ConfigError, match=None) as error:
        EmbedderConfig.load(parse(argv), environ=env)
    assert message in str(error.value)


def test_unknown_file_settings_are_refused(tmp_path: Path) -> None:
    file = tmp_path / "semcache.toml"
    file.write_text("[embedder]\nprot = 1\n")
    with pytest.raises(ConfigError, match="unknown setting"):
        EmbedderConfig.load(parse(["--config", str(file)]), environ={})


def test_files_a_config_names_are_read_once(tmp_path: Path) -> None:
    """Validation reads the tokens and policy files; the service gets what was validated,
    not a second read that could differ (or fail) at start."""
    tokens = tmp_path / "tokens"
    tokens.write_text("s3cret acme\n")
    router = RouterConfig(shards="127.0.0.1:1", tokens_file=tokens)
    router.validate()
    tokens.write_text("")  # changed after validation: not seen
    assert router.tokens is not None and router.tokens.tenant_of_request("s3cret", "") == "acme"
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(HitPolicy.static(0.9).to_json()))
    shard = ShardConfig(policy=policy)
    shard.validate()
    policy.unlink()
    assert shard.policies is shard.policies


@pytest.mark.parametrize("config", [ShardConfig, RouterConfig])
def test_help_explains_each_setting_from_its_declaration(config) -> None:
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    helps = {a.dest: a.help or "" for a in parser._actions}
    assert "Redis Cluster" in helps["redis_cluster"]
    assert "TLS" in helps["tls_cert"]  # inherited from ServerConfig
    parsed = config.load(parser.parse_args(["--redis-cluster", "true", *REQUIRED[config]]), {})
    assert parsed.redis_cluster is True


REQUIRED = {ShardConfig: ["--embedder", "127.0.0.1:1"], RouterConfig: ["--shards", "127.0.0.1:1"]}
