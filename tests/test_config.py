"""Settings come from the environment and amends.toml; a bad one stops start-up naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from amends.config import SettingsError, load_settings


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(__import__("os").environ):
        if name.startswith("AMENDS_") or name == "CREDENTIALS_DIRECTORY":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults_run_on_an_sqlite_file_in_the_working_directory() -> None:
    settings = load_settings()
    assert settings.database_url == "sqlite:///./amends.db"
    assert settings.port == 8000
    assert settings.secret_key is None


def test_the_environment_wins_over_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    Path("amends.toml").write_text('port = 9000\nhost = "0.0.0.0"\n')
    monkeypatch.setenv("AMENDS_PORT", "9100")
    settings = load_settings()
    assert (settings.host, settings.port) == ("0.0.0.0", 9100)


def test_postgres_urls_are_normalised_to_psycopg(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMENDS_DATABASE_URL", "postgres://u:p@db/amends")
    assert load_settings().database_url == "postgresql+psycopg://u:p@db/amends"


@pytest.mark.parametrize(
    ("variable", "value", "named", "reason"),
    [
        ("AMENDS_PORT", "70000", "AMENDS_PORT", "less than or equal to 65535"),
        ("AMENDS_PORT", "eighty", "AMENDS_PORT", "valid integer"),
        ("AMENDS_DATABASE_URL", "mysql://x/y", "AMENDS_DATABASE_URL", "unsupported database 'mysql'"),
        ("AMENDS_DATABASE_URL", "amends.db", "AMENDS_DATABASE_URL", "expected a URL"),
        ("AMENDS_SECRET_KEY", "short", "AMENDS_SECRET_KEY", "at least 32 characters"),
        ("AMENDS_ENVIRONMENT", "staging", "AMENDS_ENVIRONMENT", "'development' or 'production'"),
    ],
)
def test_a_bad_variable_is_named_with_its_reason(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, named: str, reason: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert caught.value.field == named
    assert reason in caught.value.reason


def test_an_unknown_key_in_the_file_is_named() -> None:
    Path("amends.toml").write_text("prot = 8080\n")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert caught.value.field == "prot in amends.toml"
    assert caught.value.reason == "unknown setting"


def test_a_bad_value_in_the_file_is_named_with_the_file() -> None:
    Path("amends.toml").write_text("port = 0\n")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert caught.value.field == "AMENDS_PORT (or port in amends.toml)"


def test_a_file_that_is_not_toml_is_refused() -> None:
    Path("amends.toml").write_text("port = = 1\n")
    with pytest.raises(SettingsError, match="cannot be read as TOML"):
        load_settings()


def test_a_missing_config_file_named_by_variable_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMENDS_CONFIG", "nowhere.toml")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert caught.value.field == "AMENDS_CONFIG"


def test_the_secret_key_is_required_only_where_it_is_used() -> None:
    settings = load_settings()
    with pytest.raises(SettingsError) as caught:
        settings.require_secret_key()
    assert caught.value.field == "AMENDS_SECRET_KEY"


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"AMENDS_SECRET_KEY": "short-secret-value"}, "AMENDS_SECRET_KEY"),
        ({"AMENDS_SMTP_PASSWORD": "short-secret-value"}, "AMENDS_SMTP_PASSWORD"),
        (
            {"AMENDS_WEBHOOK_URL": "https://sms.example.com/hooks", "AMENDS_WEBHOOK_SECRET": "short-secret-value"},
            "AMENDS_WEBHOOK_SECRET",
        ),
    ],
)
def test_a_bad_secret_is_named_but_never_shown(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], named: str
) -> None:
    for variable, value in variables.items():
        monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert caught.value.field == named
    assert "short-secret-value" not in str(caught.value)
    assert caught.value.__cause__ is None  # the validation error quotes the input; it is not chained


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"AMENDS_DATABASE_URL": "postgres ql://amends:short-secret-value@db/amends"}, "AMENDS_DATABASE_URL"),
        (
            {"AMENDS_DATABASE_URL": "postgresql://amends@db/amends",
             "AMENDS_BROKER_URL": "http://worker:short-secret-value@nats:4222"},
            "AMENDS_BROKER_URL",
        ),
    ],
)  # fmt: skip
def test_a_bad_url_is_shown_without_its_password(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], named: str
) -> None:
    for variable, value in variables.items():
        monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert caught.value.field == named
    assert "short-secret-value" not in str(caught.value)
    assert caught.value.__cause__ is None
    assert "***@" in str(caught.value) or "expected a NATS URL" in str(caught.value)


def test_secrets_come_from_files_in_a_folder_and_the_environment_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "amends_secret_key").write_text("k" * 40 + "\n")  # as `echo` or systemd-creds write it
    (tmp_path / "amends_smtp_password").write_text("from-a-file")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))  # systemd's LoadCredential=
    settings = load_settings(
        smtp_host="mail.example.com", smtp_username="amends", smtp_security="tls", mail_from="care@example.com"
    )
    assert settings.secret_key is not None
    assert settings.secret_key.get_secret_value() == "k" * 40
    assert settings.smtp_password is not None
    assert settings.smtp_password.get_secret_value() == "from-a-file"
    (tmp_path / "amends_smtp_password").unlink()
    monkeypatch.setenv("AMENDS_SECRET_KEY", "e" * 40)
    assert load_settings().secret_key.get_secret_value() == "e" * 40  # type: ignore[union-attr]

    (tmp_path / "amends_secret_key").write_text("too-short")
    monkeypatch.delenv("AMENDS_SECRET_KEY")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert caught.value.field == f"amends_secret_key in {tmp_path}"
    assert "too-short" not in str(caught.value)

    monkeypatch.setenv("AMENDS_SECRETS_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(SettingsError, match="no such folder"):
        load_settings()
