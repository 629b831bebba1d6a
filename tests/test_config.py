"""Settings: defaults <- TOML file <- YITONG_* environment; production refuses unsafe values."""

from __future__ import annotations

import pytest

from idp.config import ConfigError, load_settings

KEK = "a" * 43


def test_defaults_and_database_url(tmp_path):
    s = load_settings(environ={"YITONG_INSTANCE_DIR": str(tmp_path)})
    assert s.env == "development"
    assert s.resolved_database_url == f"sqlite:///{tmp_path.resolve()}/yitong.db"
    assert s.authorization_code_lifetime == 60


def test_environment_overrides_file(tmp_path):
    cfg = tmp_path / "y.toml"
    cfg.write_text('issuer = "https://file.example"\nsession_idle_timeout = 100\n')
    s = load_settings(environ={"YITONG_CONFIG": str(cfg), "YITONG_SESSION_IDLE_TIMEOUT": "200"})
    assert s.issuer == "https://file.example"
    assert s.session_idle_timeout == 200


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {
                "YITONG_ENV": "production",
                "YITONG_ISSUER": "https://idp.example",
                "YITONG_KEY_ENCRYPTION_KEY": KEK,
            },
            "YITONG_SECRET_KEY",
        ),
        (
            {
                "YITONG_ENV": "production",
                "YITONG_SECRET_KEY": "s" * 40,
                "YITONG_KEY_ENCRYPTION_KEY": KEK,
            },
            "https://",
        ),
        (
            {
                "YITONG_ENV": "production",
                "YITONG_SECRET_KEY": "s" * 40,
                "YITONG_ISSUER": "https://idp.example",
            },
            "KEY_ENCRYPTION_KEY",
        ),
        ({"YITONG_SESSION_IDLE_TIMEOUT": "soon"}, "whole number"),
        ({"YITONG_AUTHORIZATION_CODE_LIFETIME": "600"}, "between 1 and 60"),
        ({"YITONG_ENV": "staging"}, "must be one of"),
        ({"YITONG_ISSUER": "https://idp.example/"}, "must not end"),
    ],
)
def test_bad_settings_say_exactly_why(environ, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(environ=environ)


def test_unknown_key_in_file_and_missing_file(tmp_path):
    cfg = tmp_path / "y.toml"
    cfg.write_text("isuer = 'typo'\n")
    with pytest.raises(ConfigError, match="unknown setting 'isuer'"):
        load_settings(environ={"YITONG_CONFIG": str(cfg)})
    with pytest.raises(ConfigError, match="no such file"):
        load_settings(environ={"YITONG_CONFIG": str(tmp_path / "none.toml")})


def test_production_refuses_generated_development_kek(tmp_path):
    from idp.instance import GENERATED_MARK, key_encryption_key

    kek_file = tmp_path / "kek.key"
    kek_file.write_text(GENERATED_MARK + KEK + "\n")
    s = load_settings(
        environ={
            "YITONG_ENV": "production",
            "YITONG_SECRET_KEY": "s" * 40,
            "YITONG_ISSUER": "https://idp.example",
            "YITONG_KEY_ENCRYPTION_KEY_FILE": str(kek_file),
        }
    )
    with pytest.raises(ConfigError, match="generated development key"):
        key_encryption_key(s)
