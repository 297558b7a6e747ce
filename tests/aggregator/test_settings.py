"""Settings: the shipped file, defaults, path resolution, TIDINGS_* overrides and every error."""

from __future__ import annotations

import dataclasses
import re
import tomllib
import typing
from pathlib import Path

import pytest

from aggregator.errors import ConfigError
from aggregator.settings import (
    SECTIONS,
    TOP_LEVEL_KEYS,
    ApiSettings,
    CollectSettings,
    env_names,
    load_settings,
    scan_key_lines,
)

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "config" / "tidings.toml"


def write(tmp_path: Path, text: str, name: str = "tidings.toml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --- the shipped file ---------------------------------------------------------------------------


def test_shipped_file_loads_and_holds_every_default():
    s = load_settings(SHIPPED, env={})
    for name, cls in SECTIONS.items():
        assert getattr(s, name) == cls(), f"[{name}] in the shipped file drifted from its defaults"
    assert s.log_level == "info"
    assert s.config_file == SHIPPED.resolve()
    assert s.data_dir == (REPO / "data").resolve()
    assert s.sources_file == (REPO / "config" / "sources.toml").resolve()
    assert s.sources_file.is_file()
    assert s.database_url == f"sqlite+aiosqlite:///{(REPO / 'data' / 'tidings.db').resolve()}"


def test_shipped_file_lists_every_key():
    data = tomllib.loads(SHIPPED.read_text(encoding="utf-8"))
    assert set(data) == set(TOP_LEVEL_KEYS) | set(SECTIONS)
    for name, cls in SECTIONS.items():
        assert set(data[name]) == {f.name for f in dataclasses.fields(cls)}, name


def test_shipped_file_comments_every_key():
    lines = SHIPPED.read_text(encoding="utf-8").splitlines()
    keys = [(i, line) for i, line in enumerate(lines) if re.match(r"[a-z_][a-z_0-9]*\s*=", line)]
    assert len(keys) == len(TOP_LEVEL_KEYS) + sum(
        len(dataclasses.fields(cls)) for cls in SECTIONS.values())
    for i, line in keys:
        assert "#" in line or lines[i - 1].lstrip().startswith("#"), f"line {i + 1}: {line}"


def test_shipped_file_documents_the_contract_variables():
    text = SHIPPED.read_text(encoding="utf-8")
    for var in ("TIDINGS_DATABASE_URL", "TIDINGS_DATA_DIR", "TIDINGS_SOURCES_FILE",
                "TIDINGS_API_PORT", "TIDINGS_API_KEY", "TIDINGS_API_API_KEY"):
        assert var in text


# --- defaults and paths -------------------------------------------------------------------------


def test_no_file_means_all_defaults_from_the_working_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = load_settings(env={})
    assert s.config_file is None
    assert s.data_dir == tmp_path.resolve() / "data"
    assert s.sources_file == tmp_path.resolve() / "config" / "sources.toml"
    assert s.database_url == f"sqlite+aiosqlite:///{tmp_path.resolve()}/data/tidings.db"
    assert s.collect == CollectSettings() and s.api == ApiSettings()


def test_a_relative_sqlite_path_is_taken_from_the_settings_files_directory(tmp_path, monkeypatch):
    """SQLite opened a relative path from the working directory: run from elsewhere, the same
    settings file made a new empty database there while data_dir (the index files) stayed
    beside the file. Both now follow the file; from the environment, the working dir."""
    conf = write(tmp_path, 'database_url = "sqlite+aiosqlite:///db/t.db?timeout=5"\n', "etc/tidings.toml")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    s = load_settings(conf, env={})
    assert s.database_url == f"sqlite+aiosqlite:///{(tmp_path / 'etc' / 'db' / 't.db').resolve()}?timeout=5"
    s = load_settings(conf, env={"TIDINGS_DATABASE_URL": "sqlite:///mine.db"})
    assert s.database_url == f"sqlite+aiosqlite:///{(elsewhere / 'mine.db').resolve()}"
    for kept in ("sqlite+aiosqlite:///:memory:", f"sqlite+aiosqlite:///{tmp_path}/abs.db",
                 "postgresql+asyncpg://postgres@127.0.0.1:5432/test"):
        assert load_settings(conf, env={"TIDINGS_DATABASE_URL": kept}).database_url == kept


def test_default_file_in_cwd_is_used(tmp_path, monkeypatch):
    write(tmp_path, "[api]\nport = 9001\n", "config/tidings.toml")
    monkeypatch.chdir(tmp_path)
    s = load_settings(env={})
    assert s.api.port == 9001
    assert s.config_file == (tmp_path / "config" / "tidings.toml").resolve()


def test_explicit_missing_file_is_an_error(tmp_path):
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="file not found") as info:
        load_settings(missing, env={})
    assert str(missing) in str(info.value)


def test_relative_paths_are_taken_from_the_settings_file_dir(tmp_path, monkeypatch):
    path = write(tmp_path, 'data_dir = "store"\nsources_file = "../feeds.toml"\n',
                 "conf/tidings.toml")
    monkeypatch.chdir("/")  # anywhere else: the file's directory must win
    s = load_settings(path, env={})
    assert s.data_dir == (tmp_path / "conf" / "store").resolve()
    assert s.sources_file == (tmp_path / "feeds.toml").resolve()
    assert s.database_url.endswith(f"{(tmp_path / 'conf' / 'store').resolve()}/tidings.db")


def test_unset_sources_file_sits_beside_the_settings_file(tmp_path):
    s = load_settings(write(tmp_path, "", "etc/t.toml"), env={})
    assert s.sources_file == (tmp_path / "etc" / "sources.toml").resolve()


def test_explicit_database_url_is_kept_verbatim(tmp_path):
    url = "postgresql+asyncpg://u:p@127.0.0.1:5432/tidings"
    s = load_settings(write(tmp_path, f'database_url = "{url}"\n'), env={})
    assert s.database_url == url


def test_log_level_is_case_insensitive(tmp_path):
    assert load_settings(write(tmp_path, 'log_level = "DEBUG"\n'), env={}).log_level == "debug"


# --- environment --------------------------------------------------------------------------------


def test_contract_variables_override_the_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, "[api]\nport = 9000\n", "conf/tidings.toml")
    env = {"TIDINGS_DATABASE_URL": "sqlite+aiosqlite:///:memory:", "TIDINGS_DATA_DIR": "var",
           "TIDINGS_SOURCES_FILE": "my/sources.toml", "TIDINGS_API_PORT": "8123"}
    s = load_settings(path, env=env)
    assert s.database_url == "sqlite+aiosqlite:///:memory:"
    assert s.data_dir == tmp_path.resolve() / "var"  # from the environment: the working dir
    assert s.sources_file == tmp_path.resolve() / "my" / "sources.toml"
    assert s.api.port == 8123


def test_env_data_dir_moves_the_default_database(tmp_path):
    s = load_settings(write(tmp_path, ""), env={"TIDINGS_DATA_DIR": str(tmp_path / "x")})
    assert s.database_url == f"sqlite+aiosqlite:///{tmp_path.resolve()}/x/tidings.db"


def _other_value(section: str, key: str) -> tuple[str, object]:
    """A valid, non-default value for a key, as env text and as the parsed value."""
    cls = SECTIONS.get(section)
    hint = typing.get_type_hints(cls)[key] if cls else TOP_LEVEL_KEYS[key]
    default = getattr(cls(), key) if cls else None
    choices = {"embedder": ("hash", "hash"), "log_level": ("warning", "warning"),
               "public_url": ("https://t.example", "https://t.example"),
               "cors_origins": (" https://a.example , https://b.example:8443 ,",
                                ("https://a.example", "https://b.example:8443")),
               "database_url": ("sqlite+aiosqlite:////srv/x.db", "sqlite+aiosqlite:////srv/x.db")}
    if key in choices:
        return choices[key]
    if hint is bool:
        return ("no" if default else "yes"), not default
    if hint is int:
        return str(default + 1), default + 1
    if hint is float:
        return str(default + 0.01), default + 0.01
    if hint is str:
        return "some text", "some text"
    if hint == tuple[str, ...]:
        return " a.example , b.example ,", ("a.example", "b.example")
    assert hint is Path
    return "/srv/elsewhere", Path("/srv/elsewhere")


@pytest.mark.parametrize("var", sorted(v for v in env_names() if v != "TIDINGS_API_KEY"))
def test_every_key_has_an_environment_override(tmp_path, var):
    section, key = env_names()[var]
    if section:
        assert var == f"TIDINGS_{section.upper()}_{key.upper()}"
    else:
        assert var == f"TIDINGS_{key.upper()}"
    text, expected = _other_value(section, key)
    s = load_settings(write(tmp_path, ""), env={var: text})
    got = getattr(getattr(s, section), key) if section else getattr(s, key)
    if isinstance(expected, Path):
        got, expected = Path(got), expected.resolve()
    assert got == pytest.approx(expected) if isinstance(expected, float) else got == expected


def test_api_key_alias_and_the_long_form_wins(tmp_path):
    path = write(tmp_path, "")
    assert load_settings(path, env={"TIDINGS_API_KEY": "s3"}).api.api_key == "s3"
    both = {"TIDINGS_API_KEY": "short", "TIDINGS_API_API_KEY": "long"}
    assert load_settings(path, env=both).api.api_key == "long"
    assert load_settings(path, env={"TIDINGS_API_KEY": ""}).api.api_key == ""


def test_an_empty_api_key_variable_cannot_turn_the_files_key_off(tmp_path):
    """`TIDINGS_API_KEY=${KEY}` with KEY unset silently ran without the key the file sets:
    reader export and deletion open to anyone."""
    path = write(tmp_path, '[api]\napi_key = "from-the-file"\n')
    assert load_settings(path, env={}).api.api_key == "from-the-file"
    assert load_settings(path, env={"TIDINGS_API_KEY": "other"}).api.api_key == "other"
    for var in ("TIDINGS_API_KEY", "TIDINGS_API_API_KEY"):
        with pytest.raises(ConfigError) as e:
            load_settings(path, env={var: " "})
        assert var in str(e.value) and "authentication off" in str(e.value)


@pytest.mark.parametrize(("text", "value"), [
    ("1", True), ("true", True), ("YES", True), ("on", True),
    ("0", False), ("False", False), ("no", False), (" off ", False)])
def test_boolean_spellings(tmp_path, text, value):
    s = load_settings(write(tmp_path, ""), env={"TIDINGS_INDEX_ENABLED": text})
    assert s.index.enabled is value


def test_empty_tuple_from_env(tmp_path):
    s = load_settings(write(tmp_path, ""), env={"TIDINGS_API_CORS_ORIGINS": ""})
    assert s.api.cors_origins == ()


@pytest.mark.parametrize(("var", "text", "fragment"), [
    ("TIDINGS_API_PORT", "eighty", "expected an integer"),
    ("TIDINGS_API_PORT", "70000", "must be <= 65535"),
    ("TIDINGS_COLLECT_ENABLED", "maybe", "expected 1/true/yes/on"),
    ("TIDINGS_COLLECT_JITTER_RATIO", "lots", "expected a number"),
    ("TIDINGS_INDEX_EMBEDDER", "bert", "must be one of"),
    ("TIDINGS_DATA_DIR", " ", "expected a path"),
    ("TIDINGS_LOG_LEVEL", "loud", "must be one of"),
    ("TIDINGS_DATABASE_URL", "tidings.db", "SQLAlchemy URL"),
    # Empty, as `${DB_URL}` unset gives it: it ran on a new SQLite file in silence
    ("TIDINGS_DATABASE_URL", "", "got an empty value"),
    ("TIDINGS_DATABASE_URL", "  ", "got an empty value"),
    # No file: SQLAlchemy ran it in memory, and an import into it was gone at exit
    ("TIDINGS_DATABASE_URL", "sqlite+aiosqlite:///", "names no SQLite file"),
    ("TIDINGS_DATABASE_URL", "sqlite://", "names no SQLite file"),
    # uvicorn binds "" to every interface: the API was on the network, not on 127.0.0.1
    ("TIDINGS_API_HOST", "", "must not be empty"),
    ("TIDINGS_METRICS_HOST", " ", "must not be empty"),
    ("TIDINGS_COLLECT_MIN_INTERVAL_S", "1000", "must not exceed"),
    ("TIDINGS_API_PROT", "1", "unknown environment variable"),
    # One typo from a contract variable: the default database or sources file, in silence
    ("TIDINGS_DATABASE_URI", "postgresql+asyncpg://db/t", "did you mean TIDINGS_DATABASE_URL?"),
    ("TIDINGS_SOURCE_FILE", "/etc/tidings/sources.toml", "did you mean TIDINGS_SOURCES_FILE?"),
    ("TIDINGS_DATADIR", "/srv/tidings", "did you mean TIDINGS_DATA_DIR?"),
    # A section one typo off, before one of its keys: the collector stayed on in silence
    ("TIDINGS_COLECT_ENABLED", "false", "did you mean TIDINGS_COLLECT_ENABLED?"),
    ("TIDINGS_INDX_EMBEDDER", "hash", "did you mean TIDINGS_INDEX_EMBEDDER?"),
    ("TIDINGS_RETENSION_STORIES_DAYS", "30", "did you mean TIDINGS_RETENTION_STORIES_DAYS?"),
    ("TIDINGS_FEED_EXPLORATION_SHARE", "nan", "must be a finite number"),
    ("TIDINGS_DATA_DIR", "~no-such-user-here/d", "cannot expand"),
    ("TIDINGS_API_CORS_ORIGINS", "*,https://news.example/", "an origin has no path"),
    ("TIDINGS_API_FETCH_ALLOW_HOSTS", "intranet.example:8080", "without its port"),
    # `${UA}` unset: an empty User-Agent header, which robots.txt rules for Tidings missed
    ("TIDINGS_COLLECT_USER_AGENT", "", "must begin with a product name"),
])
def test_bad_environment_value_names_the_variable(tmp_path, var, text, fragment):
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, ""), env={var: text})
    assert var in str(info.value)
    assert fragment in str(info.value)


@pytest.mark.parametrize(("var", "text", "key"), [
    ("TIDINGS_API_DEFAULT_K", "100", "api.default_k"),
    ("TIDINGS_COLLECT_MIN_INTERVAL_S", "1000", "collect.min_interval_s"),
    ("TIDINGS_COLLECT_TOTAL_TIMEOUT_S", "5", "collect.total_timeout_s"),
])
def test_a_variable_out_of_order_with_the_shipped_file_is_named(var, text, key):
    """The shipped file shows every key, so both keys of an order rule were always given:
    the error blamed the larger one's line in the file (`max_k = 50`, untouched) and never
    named the variable that broke the rule."""
    with pytest.raises(ConfigError) as info:
        load_settings(SHIPPED, env={var: text})
    assert str(info.value).startswith(f"environment variable {var}: "), str(info.value)
    assert not info.value.file and info.value.key == key


def test_unrelated_variables_are_ignored(tmp_path):
    env = {"TIDINGS_CONFIG": "x", "TIDINGS_SOMETHING_ELSE": "1", "PATH": "/bin",
           "TIDINGS_TEST_PG": "postgresql://x", "TIDINGS_CLUSTER_LEASE_S": "20"}  # the tests' knobs
    assert load_settings(write(tmp_path, ""), env=env).api.port == 8000


def test_env_names_are_unambiguous():
    names = env_names()
    targets = [t for v, t in names.items() if v != "TIDINGS_API_KEY"]
    assert len(targets) == len(set(targets))
    assert names["TIDINGS_API_KEY"] == names["TIDINGS_API_API_KEY"] == ("api", "api_key")


# --- file errors: each names file, line and key -------------------------------------------------

FILE_ERRORS = [
    ('data_dir = "d"\nbogus = 1\n', 2, "bogus", "unknown top-level key or section (known:"),
    # One typo from a known name: that name is suggested.
    ("[colect]\ntick_s = 1\n", 1, "colect",
     "unknown top-level key or section (did you mean 'collect'?)"),
    ("[api]\nport = 1\nprot = 2\n", 3, "api.prot", "unknown key in [api] (did you mean 'port'?)"),
    ("[collect]\ntick = 5\n", 2, "collect.tick",
     "unknown key in [collect] (did you mean 'tick_s'?)"),
    ('[api]\nport = "80"\n', 2, "api.port", "expected an integer, got string '80'"),
    ("[collect]\n\n  enabled = 1\n", 3, "collect.enabled", "expected a boolean"),
    ("[collect]\njitter_ratio = 0.9\n", 2, "collect.jitter_ratio", "must be <= 0.5"),
    ("[feed]\npage_size = 0\n", 2, "feed.page_size", "must be >= 1"),
    ('[index]\nembedder = "bert"\n', 2, "index.embedder", "must be one of 'minilm', 'minilm-int8', 'minilm-int8-ort', 'minilm-int8-ov', 'minilm-onnx', 'hash'"),
    ('[api]\ncors_origins = "*"\n', 2, "api.cors_origins", "expected an array of strings"),
    ('[api]\ncors_origins = ["a", 1]\n', 2, "api.cors_origins", "expected an array of strings"),
    # Entries that can never match, so CORS or the allow list failed with nothing said
    ('[api]\ncors_origins = ["https://news.example/"]\n', 2, "api.cors_origins",
     "an origin has no path"),
    ('[api]\ncors_origins = ["*", "news.example"]\n', 2, "api.cors_origins",
     "scheme://host[:port]"),
    ('[api]\ncors_origins = ["https://News.example"]\n', 2, "api.cors_origins", "lower case"),
    ('[api]\nfetch_allow_hosts = ["http://intranet.example"]\n', 2, "api.fetch_allow_hosts",
     "bare host name"),
    ('[api]\nfetch_allow_hosts = ["intranet.example:8080"]\n', 2, "api.fetch_allow_hosts",
     "without its port"),
    ('[api]\nfetch_allow_hosts = ["[::1]"]\n', 2, "api.fetch_allow_hosts", "without brackets"),
    ('[api]\nhost = ""\n', 2, "api.host", 'write "0.0.0.0"'),
    ('[metrics]\nhost = ""\n', 2, "metrics.host", 'write "0.0.0.0"'),
    ("[metrics]\nport = 70000\n", 2, "metrics.port", "must be <= 65535"),
    ("[collect]\nmin_interval_s = 1000\n", 2, "collect.min_interval_s", "must not exceed"),
    ("[collect]\nmin_interval_s = 600\n\ndefault_interval_s = 500\n", 4,
     "collect.default_interval_s", "must not exceed"),
    ("[collect]\nconnect_timeout_s = 40\n", 2, "collect.connect_timeout_s", "must not exceed"),
    ("[api]\nmax_k = 3\n", 2, "api.max_k", "must not exceed"),
    ('\n[api]\npublic_url = "tidings.example"\n', 3, "api.public_url", "absolute http(s) URL"),
    ("collect = 5\n", 1, "collect", "must be a table"),
    # An array of tables: its path is ("collect", 0), and the error had no line at all.
    ('log_level = "info"\n[[collect]]\ntick_s = 1\n', 2, "collect", "must be a table"),
    ('log_level = "loud"\n', 1, "log_level", "must be one of"),
    ('database_url = "tidings.db"\n', 1, "database_url", "SQLAlchemy URL"),
    ("data_dir = 3\n", 1, "data_dir", "expected a path string"),
    ('data_dir = ""\n', 1, "data_dir", "expected a path string"),
    ("api.prot = 1\n", 1, "api.prot", "unknown key in [api]"),
    ("api = { port = 80, prot = 1 }\n", 1, "api.prot", "unknown key in [api]"),
    ("[api]\n'port' = true\n", 2, "api.port", "expected an integer"),
    # NaN compares false with every bound: it passed them all (jitter nan made sources due
    # a second after each fetch)
    ("[collect]\njitter_ratio = nan\n", 2, "collect.jitter_ratio", "must be a finite number"),
    ("[collect]\ntick_s = inf\n", 2, "collect.tick_s", "must be a finite number"),
    ('[collect]\nuser_agent = "a\\nb"\n', 2, "collect.user_agent", "must not hold control characters"),
    ('[collect]\nuser_agent = " (compatible)"\n', 2, "collect.user_agent",
     "must begin with a product name"),
    ('data_dir = "d\\u0000x"\n', 1, "data_dir", "cannot hold a NUL"),
    ('sources_file = "~no-such-user-here/s.toml"\n', 1, "sources_file", "cannot expand"),
    # A multi-line string never closed: tomllib says "at end of document", and the file's
    # last line was named, far below the line to fix.
    ('[api]\nhost = """0.0.0.0\nport = 8000\n\n[collect]\ntick_s = 1\n', 2, "api.host",
     "invalid TOML: Unterminated string (at end of document): the multi-line string that "
     "opens here is never closed"),
    ("log_level = '''info\n[api]\nport = 8000\n", 1, "log_level", "is never closed"),
]


@pytest.mark.parametrize(("text", "quoted"), [
    ("[collect]\nenabled = [true]\n", "got array [true]"),
    ("[api]\nport = false\n", "got boolean false"),
    ("[api]\nhost = true\n", "got boolean true"),
    ('[api]\ncors_origins = ["a", 1, {b = "c"}]\n', "got array ['a', 1, {b = 'c'}]"),
    ("data_dir = 1979-05-27T07:32:00Z\n", "got date-time 1979-05-27T07:32:00+00:00"),
    ("log_level = 07:32:00\n", "got time 07:32:00"),
])
def test_file_errors_quote_values_as_toml_writes_them(tmp_path, text, quoted):
    """`port = false` was answered "got boolean False", Python's spelling of the value."""
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text), env={})
    assert quoted in str(info.value), str(info.value)
    assert not re.search(r"True|False|None|datetime", str(info.value))


@pytest.mark.parametrize(("text", "line", "key", "fragment"), FILE_ERRORS)
def test_file_errors_name_file_line_and_key(tmp_path, text, line, key, fragment):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    err = info.value
    assert (err.file, err.line, err.key) == (str(path), line, key)
    assert f"{path}:{line}: " in str(err)
    assert f"(key '{key}')" in str(err)
    assert fragment in str(err)


@pytest.mark.parametrize("text", [
    "[api]\nport = 8000\nhost = = 'x'\n",
    # tomllib says "Unterminated string (at end of document)", without a line: the last one.
    '[api]\nport = 8000\nhost = "0.0.0.0',
])
def test_toml_syntax_error_keeps_tomllibs_line(tmp_path, text):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match="invalid TOML") as info:
        load_settings(path, env={})
    assert info.value.line == 3
    assert f"{path}:3: " in str(info.value)


# --- the line scanner ---------------------------------------------------------------------------


def test_scanner_skips_multiline_strings_and_indexes_array_tables():
    text = '\n'.join([
        'a = """',             # 1
        'b = 1',               # 2: inside the string, not a key
        '"""',                 # 3
        'c = 2',               # 4
        '[[source]]',          # 5
        'name = "x"',          # 6
        '[source.selectors]',  # 7
        'item = "li"',         # 8
        '[[source]]',          # 9
        '  "name" = "y"',      # 10
        'selectors = { item = "a" }',  # 11
    ])
    tomllib.loads(text)  # the fixture itself is valid TOML
    lines = scan_key_lines(text)
    assert lines.of("a") == 1 and lines.of("c") == 4
    assert lines.of("b") is None
    assert lines.of("source", 0) == 5 and lines.of("source", 0, "name") == 6
    assert lines.of("source", 0, "selectors", "item") == 8
    assert lines.of("source", 1) == 9 and lines.of("source", 1, "name") == 10
    assert lines.of("source", 1, "selectors", "item") == 11  # inline: the selectors line
    assert lines.of("source", 1, "weight") == 9  # absent: its table's line


def test_unreadable_toml_names_the_line_or_the_file(tmp_path):
    """Bytes that are not UTF-8: the line they are on (not a byte offset); values nested
    thousands deep: a ConfigError, not Python's RecursionError."""
    path = tmp_path / "t.toml"
    path.write_bytes(b'data_dir = "d"\n[api]\nhost = "caf\xe9"\n')
    with pytest.raises(ConfigError, match="not UTF-8 text") as info:
        load_settings(path, env={})
    assert info.value.line == 3 and str(info.value).startswith(f"{path}:3: ")
    path.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_settings(path, env={})


def test_a_byte_order_mark_is_no_error(tmp_path):
    """Windows Notepad saves UTF-8 with a BOM: tomllib read it as "Invalid statement (at line
    1, column 1)" in a file that looks right. Both files read it as the story files do."""
    from aggregator.sources import load_sources

    path = tmp_path / "tidings.toml"
    path.write_bytes(b'\xef\xbb\xbfdata_dir = "d"\r\n[api]\r\nport = 8123\r\n')
    s = load_settings(path, env={})
    assert s.api.port == 8123 and s.data_dir == (tmp_path / "d").resolve()
    (tmp_path / "sources.toml").write_bytes(
        b'\xef\xbb\xbf[[source]]\nname = "a"\nurl = "http://127.0.0.1/feed"\ncategory = "news"\n')
    assert [spec.name for spec in load_sources(s.sources_file)] == ["a"]
    # The lines still count from the first: an error after the mark names its own line.
    path.write_bytes(b'\xef\xbb\xbfdata_dir = "d"\n[api]\nprot = 1\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert info.value.line == 3 and info.value.key == "api.prot"


def test_origins_and_hosts_in_their_usual_forms_load(tmp_path):
    path = write(tmp_path, '[api]\ncors_origins = ["*", "https://news.example", '
                 '"http://127.0.0.1:8080", "https://[::1]:8443"]\n'
                 'fetch_allow_hosts = ["intranet.example", "10.0.0.5", "::1", "FE80::1"]\n')
    api = load_settings(path, env={}).api
    assert len(api.cors_origins) == 4 and len(api.fetch_allow_hosts) == 4


@pytest.mark.parametrize(("given", "used"), [
    ("postgresql://tidings:pw@db:5432/tidings", "postgresql+asyncpg://tidings:pw@db:5432/tidings"),
    ("postgres://tidings@db/tidings", "postgresql+asyncpg://tidings@db/tidings"),
    ("sqlite:////var/lib/tidings.db", "sqlite+aiosqlite:////var/lib/tidings.db"),
    ("postgresql+asyncpg://db/t", "postgresql+asyncpg://db/t"),  # a driver named stays
])
def test_a_database_url_without_a_driver_takes_the_shipped_async_one(tmp_path, given, used):
    # `postgresql://user@host/db`, the URL psql, pg_dump and most hosts give, failed at start
    # with "No module named 'psycopg'" (SQLAlchemy's default driver, not installed), and
    # `sqlite:///` with "the asyncio extension requires an async driver": neither said what
    # to write instead. The drivers Tidings ships are asyncpg and aiosqlite.
    s = load_settings(write(tmp_path, ""), env={"TIDINGS_DATABASE_URL": given})
    assert s.database_url == used
