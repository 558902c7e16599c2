"""simulator.settings: flags, then KOOSIM_* variables, then koosim.toml; every mistake a ConfigError."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.protocol import generate_rsa_private_key, public_key_pem
from simulator.settings import CONFIG_FILE, SETTINGS, ConfigError, Settings, load_settings

NO_FLAGS: dict[str, object] = {}


def write_config(directory: Path, text: str) -> Path:
    path = directory / CONFIG_FILE
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_flags_environment_or_file(tmp_path: Path) -> None:
    assert load_settings(NO_FLAGS, environ={}, cwd=tmp_path) == Settings(
        url=None,
        protocol="v2",
        access_key=None,
        sync_url=None,
        sync_key=None,
        rsa_public_key=None,
        timeout=10.0,
    )


def test_flags_win_over_environment_which_wins_over_the_file(tmp_path: Path) -> None:
    write_config(
        tmp_path,
        'url = "http://file.example/produceAPI"\n'
        'protocol = "v1"\n'
        'access_key = "file-key"\n'
        'sync_url = "http://file.example/sync"\n'
        'sync_key = "file-sync-key"\n'
        "timeout = 5\n",
    )
    environ = {
        "KOOSIM_URL": "http://env.example/produceAPI",
        "KOOSIM_ACCESS_KEY": "env-key-0001",
        "KOOSIM_TIMEOUT": "7.5",
    }
    flags = {"url": "http://flag.example/produceAPI", "protocol": None, "timeout": None}
    settings = load_settings(flags, environ=environ, cwd=tmp_path)
    assert settings.url == "http://flag.example/produceAPI"  # flag over env and file
    assert settings.access_key == "env-key-0001"  # env over file
    assert settings.timeout == 7.5  # env over file; a None flag does not count
    assert settings.protocol == "v1"  # file only
    assert settings.sync_url == "http://file.example/sync"
    assert settings.sync_key == "file-sync-key"


def test_a_flag_wins_for_every_setting(tmp_path: Path) -> None:
    write_config(tmp_path, 'protocol = "v1"\ntimeout = 5\n')
    environ = {"KOOSIM_PROTOCOL": "v1", "KOOSIM_TIMEOUT": "6"}
    settings = load_settings({"protocol": "v2", "timeout": 3.0}, environ=environ, cwd=tmp_path)
    assert (settings.protocol, settings.timeout) == ("v2", 3.0)


def test_an_empty_environment_variable_does_not_hide_the_file(tmp_path: Path) -> None:
    write_config(tmp_path, 'access_key = "file-key"\n')
    settings = load_settings(NO_FLAGS, environ={"KOOSIM_ACCESS_KEY": ""}, cwd=tmp_path)
    assert settings.access_key == "file-key"


def test_the_file_may_hold_a_koosim_table(tmp_path: Path) -> None:
    write_config(tmp_path, '[koosim]\nurl = "http://table.example/produceAPI"\nprotocol = "v1"\n')
    settings = load_settings(NO_FLAGS, environ={}, cwd=tmp_path)
    assert settings.url == "http://table.example/produceAPI"
    assert settings.protocol == "v1"


def test_every_setting_has_its_environment_variable() -> None:
    assert {name: f"KOOSIM_{name.upper()}" for name in SETTINGS} == SETTINGS


def test_only_the_given_cwd_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    write_config(elsewhere, "not = valid = toml\n")
    monkeypatch.chdir(elsewhere)
    project = tmp_path / "project"
    project.mkdir()
    assert load_settings(NO_FLAGS, environ={}, cwd=project).url is None


def test_unknown_key_in_the_file_names_the_file_and_the_key(tmp_path: Path) -> None:
    path = write_config(tmp_path, 'url = "http://x"\naccesskey = "typo"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(NO_FLAGS, environ={}, cwd=tmp_path)
    assert str(path) in str(caught.value)
    assert "accesskey" in str(caught.value)


def test_malformed_file_names_the_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, 'url = "unterminated\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(NO_FLAGS, environ={}, cwd=tmp_path)
    assert str(path) in str(caught.value)


def test_file_that_is_not_utf8_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / CONFIG_FILE
    path.write_bytes(b'url = "\xff\xfe"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(NO_FLAGS, environ={}, cwd=tmp_path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(
    ("flags", "environ", "file_text", "source"),
    [
        ({"protocol": "v3"}, {}, "", "--protocol"),
        ({}, {"KOOSIM_PROTOCOL": "V2"}, "", "KOOSIM_PROTOCOL"),
        ({}, {}, 'protocol = "soap"\n', CONFIG_FILE),
    ],
    ids=["flag", "env", "file"],
)
def test_bad_protocol_is_a_config_error_naming_its_source(
    tmp_path: Path, flags: dict, environ: dict, file_text: str, source: str
) -> None:
    write_config(tmp_path, file_text)
    with pytest.raises(ConfigError, match="protocol") as caught:
        load_settings(flags, environ=environ, cwd=tmp_path)
    assert source in str(caught.value)


@pytest.mark.parametrize(
    ("environ", "file_text", "source"),
    [
        ({"KOOSIM_TIMEOUT": "soon"}, "", "KOOSIM_TIMEOUT"),
        ({"KOOSIM_TIMEOUT": "0"}, "", "KOOSIM_TIMEOUT"),
        ({"KOOSIM_TIMEOUT": "-1"}, "", "KOOSIM_TIMEOUT"),
        ({}, 'timeout = "ten"\n', CONFIG_FILE),
        ({}, "timeout = -3\n", CONFIG_FILE),
        ({}, "timeout = [1]\n", CONFIG_FILE),
    ],
    ids=["env-word", "env-zero", "env-negative", "file-word", "file-negative", "file-list"],
)
def test_bad_timeout_is_a_config_error_naming_its_source(
    tmp_path: Path, environ: dict, file_text: str, source: str
) -> None:
    write_config(tmp_path, file_text)
    with pytest.raises(ConfigError, match="timeout") as caught:
        load_settings(NO_FLAGS, environ=environ, cwd=tmp_path)
    assert source in str(caught.value)


@pytest.fixture(scope="module")
def rsa_public_pem() -> bytes:
    return public_key_pem(generate_rsa_private_key())


def test_rsa_public_key_is_read_from_its_path(tmp_path: Path, rsa_public_pem: bytes) -> None:
    pem = tmp_path / "merchant.pub.pem"
    pem.write_bytes(rsa_public_pem)
    settings = load_settings(NO_FLAGS, environ={"KOOSIM_RSA_PUBLIC_KEY": str(pem)}, cwd=tmp_path)
    assert settings.rsa_public_key == rsa_public_pem


@pytest.mark.parametrize(
    "content", [b"-----BEGIN PUBLIC KEY-----\n...\n-----END PUBLIC KEY-----\n", b"not a key"]
)
def test_rsa_public_key_that_is_not_a_pem_rsa_key_is_a_config_error(tmp_path: Path, content: bytes) -> None:
    pem = tmp_path / "merchant.pub.pem"
    pem.write_bytes(content)
    with pytest.raises(ConfigError, match=r"KOOSIM_RSA_PUBLIC_KEY: .* is not a PEM RSA public key"):
        load_settings(NO_FLAGS, environ={"KOOSIM_RSA_PUBLIC_KEY": str(pem)}, cwd=tmp_path)


@pytest.mark.parametrize("timeout", ["nan", "inf", "-1", "0", "301", "abc"])
def test_timeout_must_be_a_finite_number_of_seconds_up_to_300(tmp_path: Path, timeout: str) -> None:
    with pytest.raises(ConfigError, match="KOOSIM_TIMEOUT: timeout must be"):
        load_settings(NO_FLAGS, environ={"KOOSIM_TIMEOUT": timeout}, cwd=tmp_path)


@pytest.mark.parametrize("url", ["notaurl", "ftp://host/produceAPI", "http://", "http://host:99999/x"])
def test_url_must_be_http_with_a_host(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigError, match="--url: "):
        load_settings({"url": url}, environ={}, cwd=tmp_path)


@pytest.mark.parametrize("via", ["flag", "env", "file"])
def test_rsa_public_key_path_that_does_not_exist_is_a_config_error(tmp_path: Path, via: str) -> None:
    missing = str(tmp_path / "nowhere.pem")
    flags = {"rsa_public_key": missing} if via == "flag" else {}
    environ = {"KOOSIM_RSA_PUBLIC_KEY": missing} if via == "env" else {}
    write_config(tmp_path, f"rsa_public_key = {missing!r}\n" if via == "file" else "")
    with pytest.raises(ConfigError) as caught:
        load_settings(flags, environ=environ, cwd=tmp_path)
    assert missing in str(caught.value)


def test_koosim_key_that_is_not_a_table_is_a_config_error(tmp_path: Path) -> None:
    write_config(tmp_path, "koosim = 5\n")
    with pytest.raises(ConfigError):
        load_settings(NO_FLAGS, environ={}, cwd=tmp_path)


@pytest.mark.parametrize("file_text", ["url = 5\n", "timeout = true\n", "access_key = 123\n"])
def test_file_value_of_the_wrong_type_is_a_config_error(tmp_path: Path, file_text: str) -> None:
    write_config(tmp_path, file_text)
    with pytest.raises(ConfigError):
        load_settings(NO_FLAGS, environ={}, cwd=tmp_path)


def test_relative_rsa_public_key_in_the_file_is_relative_to_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rsa_public_pem: bytes
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "merchant.pub.pem").write_bytes(rsa_public_pem)
    write_config(project, 'rsa_public_key = "merchant.pub.pem"\n')
    monkeypatch.chdir(tmp_path)
    assert load_settings(NO_FLAGS, environ={}, cwd=project).rsa_public_key == rsa_public_pem


@pytest.mark.parametrize("variable", ["KOOSIM_ACCESS_KEY", "KOOSIM_SYNC_KEY"])
def test_a_key_shorter_than_8_characters_is_refused_in_one_line(
    variable: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redacting a 3-character key would garble every report (``notification.[redacted]en``)."""
    from click.testing import CliRunner

    from simulator.cli import main

    with pytest.raises(ConfigError, match=f"^{variable} is 3 character"):
        load_settings(NO_FLAGS, environ={variable: "tok"}, cwd=tmp_path)
    monkeypatch.chdir(tmp_path)
    environ = {"KOOSIM_ACCESS_KEY": "long-enough-key", variable: "tok"}
    result = CliRunner().invoke(main, ["verify", "--url", "http://127.0.0.1:9/produceAPI"], env=environ)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "at least 8" in result.output
    assert len(result.output.strip().splitlines()) == 1
