"""Setup file validation: every error names file, key path, bad value and what is expected."""

from __future__ import annotations

import sys

import pytest
import yaml
from daq_helpers import copy_setup, run_cli, run_folder, summary

from mimocorb.daq.setup_file import SetupFileError, load_setup, run_name


@pytest.fixture
def chain(tmp_path):
    return copy_setup("chain", tmp_path)


def write_setup(folder, data) -> str:
    path = folder / "setup.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False) if not isinstance(data, str) else data)
    return path


def base(chain) -> dict:
    return yaml.safe_load((chain / "chain_setup.yaml").read_text())


def test_valid_setup(chain):
    s = load_setup(chain / "chain_setup.yaml")
    assert s.name == "chain"
    assert [b.name for b in s.buffers] == ["RB_1", "RB_2"]
    assert s.buffers[0].values_per_slot == 8 and s.buffers[0].field_names == ["chA", "chB"]
    assert s.runtime == 60 and s.runevents == 0  # from the common config's 'general' block
    f = {x.key: x for x in s.functions}
    assert f["Fkt_1"].config == {"events": 400, "sleeptime": 0.0005}  # block named after the function
    assert f["Fkt_3"].config == {"filename": "selected"}  # its own config_file
    assert f["Fkt_2"].num_process == 2 and f["Fkt_2"].rb_assign == {"RB_1": "read", "RB_2": "write"}
    assert f["Fkt_2"].module_path == (chain / "modules" / "filter.py").resolve()
    assert s.output_directory == chain / "target"
    assert [p.name for p in s.config_files()] == ["common.yaml", "export.yaml"]
    assert s.warnings == []


def _set(path):
    """Return a mutator that sets the value at a key path like ('RingBuffer', 1, 'RB_2', 'number_of_slots')."""

    def mutate(d, value):
        for k in path[:-1]:
            d = d[k]
        if value is KeyError:
            del d[path[-1]]
        else:
            d[path[-1]] = value

    return mutate


BAD = [
    (
        ("RingBuffer", 1, "RB_2", "number_of_slots"),
        "abc",
        "RingBuffer[1].RB_2.number_of_slots: expected an integer >= 1, got 'abc'",
    ),
    (
        ("RingBuffer", 0, "RB_1", "channel_per_slot"),
        0,
        "RingBuffer[0].RB_1.channel_per_slot: expected an integer >= 1, got 0",
    ),
    (
        ("RingBuffer", 0, "RB_1", "number_of_slots"),
        2.5,
        "RingBuffer[0].RB_1.number_of_slots: expected an integer >= 1, got 2.5",
    ),
    (
        ("RingBuffer", 0, "RB_1", "data_type", 1),
        ["chA", "float33"],
        "RingBuffer[0].RB_1.data_type.1: expected a NumPy type name like 'float32' or 'int32' for field 'chA', "
        "got 'float33'",
    ),
    (
        ("RingBuffer", 0, "RB_1", "data_type", 2),
        ["chA", "int32"],
        "RingBuffer[0].RB_1.data_type.2: field name 'chA' appears twice",
    ),
    (
        ("RingBuffer", 0, "RB_1", "data_type"),
        17,
        "RingBuffer[0].RB_1.data_type: expected a NumPy type name like 'float32' or a mapping {1: [name, type]}, "
        "got 17",
    ),
    (
        ("RingBuffer", 1, "RB_2", "channel_per_slot"),
        KeyError,
        "RingBuffer[1].RB_2.channel_per_slot: missing; expected an integer >= 1",
    ),
    (
        ("Functions", 1, "Fkt_1", "file_name"),
        "modules/nowhere",
        "Functions[1].Fkt_1.file_name: module file not found: ",
    ),
    (("Functions", 2, "Fkt_2", "fkt_name"), "nope", "Functions[2].Fkt_2.fkt_name: "),
    (("Functions", 2, "Fkt_2", "num_process"), -1, "Functions[2].Fkt_2.num_process: expected an integer >= 1, got -1"),
    (
        ("Functions", 3, "Fkt_3", "RB_assign", "RB_9"),
        "read",
        "Functions[3].Fkt_3.RB_assign.RB_9: unknown buffer 'RB_9'; buffers defined: RB_1, RB_2",
    ),
    (
        ("Functions", 3, "Fkt_3", "RB_assign", "RB_2"),
        "raed",
        "Functions[3].Fkt_3.RB_assign.RB_2: expected one of read, write, observe, got 'raed'",
    ),
    (
        ("Functions", 3, "Fkt_3", "config_file"),
        "config/missing.yaml",
        "Functions[3].Fkt_3.config_file: config file not found: ",
    ),
    (("Functions", 0, "Fkt_main", "runtime"), -5, "Functions[0].Fkt_main.runtime: expected a number >= 0, got -5"),
    (
        ("Functions", 0, "Fkt_main", "runevents"),
        "many",
        "Functions[0].Fkt_main.runevents: expected an integer >= 0, got 'many'",
    ),
    (("RingBuffer",), KeyError, "RingBuffer: missing; expected a list of buffers"),
    (("KBD_control",), "yes please", "KBD_control: expected true or false, got 'yes please'"),
]


@pytest.mark.parametrize("path,value,message", BAD, ids=[".".join(map(str, b[0])) for b in BAD])
def test_bad_setup_matrix(chain, path, value, message):
    d = base(chain)
    _set(path)(d, value)
    setup = write_setup(chain, d)
    with pytest.raises(SetupFileError) as info:
        load_setup(setup)
    assert any(e.startswith(f"{setup}: ") and message in e for e in info.value.errors), info.value.errors


def test_missing_function_lists_what_is_there(chain):
    d = base(chain)
    d["Functions"][2]["Fkt_2"]["fkt_name"] = "selekt"
    with pytest.raises(SetupFileError) as info:
        load_setup(write_setup(chain, d))
    msg = str(info.value)
    assert "has no function 'selekt'" in msg and "select" in msg and "filter.py" in msg


def test_module_that_fails_to_import(chain):
    (chain / "modules" / "broken.py").write_text("def f(:\n")
    d = base(chain)
    d["Functions"][2]["Fkt_2"]["file_name"] = "modules/broken"
    with pytest.raises(SetupFileError) as info:
        load_setup(write_setup(chain, d))
    assert "Functions[2].Fkt_2.file_name: importing" in str(info.value) and "SyntaxError" in str(info.value)


def test_all_errors_reported_together(chain):
    d = base(chain)
    d["RingBuffer"][0]["RB_1"]["number_of_slots"] = 0
    d["Functions"][3]["Fkt_3"]["num_process"] = "two"
    with pytest.raises(SetupFileError) as info:
        load_setup(write_setup(chain, d))
    assert len(info.value.errors) == 2


def test_not_yaml_and_missing_file(chain, tmp_path):
    with pytest.raises(SetupFileError, match=r"setup.yaml: not valid YAML"):
        load_setup(write_setup(chain, "RingBuffer: [\n"))
    with pytest.raises(SetupFileError, match=r"nothere.yaml: setup file not found"):
        load_setup(tmp_path / "nothere.yaml")


def test_unknown_keys_warn(chain, caplog):
    d = base(chain)
    d["RingBuffer"][0]["RB_1"]["colour"] = "blue"
    d["Extra"] = 1
    s = load_setup(write_setup(chain, d))
    assert any("RingBuffer[0].RB_1.colour: unknown key" in w for w in s.warnings)
    assert any("Extra: unknown key" in w for w in s.warnings)
    assert "colour" in caplog.text


def test_run_name():
    assert run_name("lifetime_setup.yaml") == "lifetime"
    assert run_name("simulsetup.yaml") == "simul"
    assert run_name("setup.yaml") == "setup"
    assert run_name("daq.yaml") == "daq"


def test_cli_rejects_bad_setup_before_starting(chain, tmp_path):
    d = base(chain)
    d["RingBuffer"][1]["RB_2"]["number_of_slots"] = "abc"
    setup = write_setup(chain, d)
    out = tmp_path / "out"
    res = run_cli(["run", setup, "--headless", "--output", out], timeout=60)
    assert res.returncode == 2
    assert f"{setup}: RingBuffer[1].RB_2.number_of_slots: expected an integer >= 1, got 'abc'" in res.stderr
    assert not out.exists()  # nothing was started, no run folder made
    assert not (chain / "produced.txt").exists()


def _readers(n):
    def mutate(d, _):
        reader = {"file_name": "modules/export", "fkt_name": "to_text", "RB_assign": {"RB_2": "read"}}
        d["Functions"] += [{f"Fkt_{10 + i}": dict(reader)} for i in range(n)]

    return mutate


MORE_BAD = [
    (
        "runtime_nan",
        _set(("Functions", 0, "Fkt_main", "runtime")),
        float("nan"),
        "Functions[0].Fkt_main.runtime: expected a finite number >= 0, got nan",
    ),
    (
        "object_field",
        _set(("RingBuffer", 0, "RB_1", "data_type", 1)),
        ["chA", "object"],
        "RingBuffer[0].RB_1.data_type.1: expected a numeric NumPy type like 'float32' for field 'chA', got 'object'",
    ),
    (
        "S0_field",
        _set(("RingBuffer", 0, "RB_1", "data_type", 2)),
        ["chB", "S0"],
        "RingBuffer[0].RB_1.data_type.2: expected a numeric NumPy type like 'float32' for field 'chB', got 'S0': ",
    ),
    (
        "V0_type",
        _set(("RingBuffer", 1, "RB_2", "data_type")),
        "V0",
        "RingBuffer[1].RB_2.data_type: expected a numeric NumPy type like 'float32' or a mapping {1: [name, type]}, "
        "got 'V0': ",
    ),
    (
        "metadata_field",
        _set(("RingBuffer", 1, "RB_2", "data_type", 1)),
        ["counter", "int64"],
        "RingBuffer[1].RB_2.data_type.1: field name 'counter' is the name of a metadata column",
    ),
    (
        "channels_2**62",
        _set(("RingBuffer", 0, "RB_1", "channel_per_slot")),
        2**62,
        f"RingBuffer[0].RB_1.channel_per_slot: expected at most {2**32 - 1}, got {2**62}",
    ),
    (
        "channels_1e11",
        _set(("RingBuffer", 0, "RB_1", "channel_per_slot")),
        10**11,
        f"RingBuffer[0].RB_1.channel_per_slot: expected at most {2**32 - 1}, got {10**11}",
    ),
    ("slots_1e14", _set(("RingBuffer", 0, "RB_1", "number_of_slots")), 10**14, "RingBuffer[0].RB_1: needs at least "),
    ("17_readers", _readers(16), None, "RingBuffer[1].RB_2: read by 17 functions (Fkt_3, Fkt_10, "),
    (
        "num_process_300",
        _set(("Functions", 3, "Fkt_3", "num_process")),
        300,
        "Functions[3].Fkt_3.num_process: expected at most 256 processes, got 300",
    ),
    (
        "output_below_a_file",
        _set(("output_directory",)),
        "chain_setup.yaml/target",
        "chain_setup.yaml is a file, not a folder; got 'chain_setup.yaml/target'",
    ),
    (
        "buffer_named_1",
        lambda d, v: d["RingBuffer"].__setitem__(0, {1: d["RingBuffer"][0]["RB_1"]}),
        None,
        "RingBuffer[0].1: expected a name (text such as RB_1 or Fkt_1), got 1",
    ),
    (
        "assign_to_1",
        _set(("Functions", 3, "Fkt_3", "RB_assign")),
        {1: "read"},
        "Functions[3].Fkt_3.RB_assign.1: expected a buffer name (text such as RB_1), got 1",
    ),
]


@pytest.mark.parametrize("mutate,value,message", [b[1:] for b in MORE_BAD], ids=[b[0] for b in MORE_BAD])
def test_what_the_buffers_cannot_hold_is_a_setup_error(chain, mutate, value, message):
    d = base(chain)
    mutate(d, value)
    setup = write_setup(chain, d)
    with pytest.raises(SetupFileError) as info:
        load_setup(setup)
    assert any(e.startswith(f"{setup}: ") and message in e for e in info.value.errors), info.value.errors


RAW_BAD = [
    ("not_utf8", lambda t: "# caf\xe9\n".encode("latin1") + t.encode(), "setup.yaml: not UTF-8 text"),
    (
        "duplicate_key",
        lambda t: t.replace("RB_assign: {RB_1: read, RB_2: write}", "RB_assign: {RB_1: read, RB_1: write}").encode(),
        "setup.yaml: Functions[2].Fkt_2.RB_assign.RB_1: appears twice in one mapping (lines 15 and 15)",
    ),
    (
        "second_functions",
        lambda t: (t + "Functions:\n  - Fkt_1: {}\n").encode(),
        "setup.yaml: Functions: appears twice in one mapping (lines 12 and 18)",
    ),
]


@pytest.mark.parametrize("edit,message", [b[1:] for b in RAW_BAD], ids=[b[0] for b in RAW_BAD])
def test_setup_file_text_problems(chain, tmp_path, edit, message):
    setup = chain / "setup.yaml"
    setup.write_bytes(edit((chain / "chain_setup.yaml").read_text()))
    with pytest.raises(SetupFileError) as info:
        load_setup(setup)
    assert any(message in e for e in info.value.errors), info.value.errors
    # the command line: exit 2, nothing started, no run folder
    out = tmp_path / "out"
    res = run_cli(["run", setup, "--headless", "--output", out], timeout=60)
    assert res.returncode == 2 and message in res.stderr, res.stderr
    assert not out.exists() and not (chain / "produced.txt").exists()


def test_config_file_text_problems(chain):
    (chain / "config" / "export.yaml").write_bytes(b"filename: s\xe9lected\n")
    with pytest.raises(SetupFileError, match=r"Functions\[3\].Fkt_3.config_file: config file .*export.yaml: not UTF-8"):
        load_setup(chain / "chain_setup.yaml")
    (chain / "config" / "export.yaml").write_text("filename: a\nfilename: b\n")
    with pytest.raises(SetupFileError, match=r"export.yaml: filename: appears twice in one mapping \(lines 1 and 2\)"):
        load_setup(chain / "chain_setup.yaml")


def test_a_module_that_blocks_when_imported_is_named_and_the_check_goes_on(chain):
    (chain / "modules" / "stuck.py").write_text("import time\ntime.sleep(60)\n\ndef f(*a, **k):\n    pass\n")
    d = base(chain)
    d["Functions"][2]["Fkt_2"]["file_name"] = "modules/stuck"
    d["Functions"][2]["Fkt_2"]["fkt_name"] = "f"
    d["Functions"][3]["Fkt_3"]["fkt_name"] = "to_txet"  # checked after the stuck one
    with pytest.raises(SetupFileError) as info:
        load_setup(write_setup(chain, d), import_timeout=1.0)
    errors = "\n".join(info.value.errors)
    assert "Functions[2].Fkt_2.file_name: importing " in errors and "stuck.py did not finish within 1 s" in errors
    assert "Functions[3].Fkt_3.fkt_name: " in errors and "has no function 'to_txet'" in errors


# ------------------------------------------------ file_name: a file, or a module name
@pytest.fixture
def site(tmp_path, monkeypatch):
    """A folder on sys.path (inherited by the forked check process) holding importable modules."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    yield folder
    for name in [m for m in sys.modules if m.split(".")[0] in ("labpkg", "samename")]:
        del sys.modules[name]


def _labpkg(site):
    (site / "labpkg").mkdir()
    (site / "labpkg" / "__init__.py").write_text("")
    (site / "labpkg" / "sinks.py").write_text(
        "__all__ = ['collect']\n\n\ndef collect(source_list=None, sink_list=None, observe_list=None, "
        "config_dict=None, **rb_info):\n    pass\n\n\ndef _helper():\n    pass\n"
    )


def test_file_name_may_be_a_module_name(chain, site):
    _labpkg(site)
    d = base(chain)
    d["Functions"][3]["Fkt_3"]["file_name"] = "labpkg.sinks"
    d["Functions"][3]["Fkt_3"]["fkt_name"] = "collect"
    s = load_setup(write_setup(chain, d))
    f = {x.key: x for x in s.functions}["Fkt_3"]
    assert f.module.name == "labpkg.sinks" and f.module_path is None and f.file_name == "labpkg.sinks"
    assert f.config == {"filename": "selected"}  # the config is found as for a module file


def test_unknown_module_name_says_what_was_looked_for(chain):
    d = base(chain)
    d["Functions"][2]["Fkt_2"]["file_name"] = "mimocorb.nothere"
    setup = write_setup(chain, d)
    with pytest.raises(SetupFileError) as info:
        load_setup(setup)
    (err,) = info.value.errors
    tried = chain / "mimocorb.nothere.py"
    assert err.startswith(f"{setup}: Functions[2].Fkt_2.file_name: module file not found: {tried}, ")
    assert "no module 'mimocorb.nothere' can be imported" in err and "dotted name of an importable module" in err


def test_unknown_function_of_a_module_lists_what_it_offers(chain, site):
    _labpkg(site)
    d = base(chain)
    d["Functions"][3]["Fkt_3"]["file_name"] = "labpkg.sinks"
    d["Functions"][3]["Fkt_3"]["fkt_name"] = "colect"
    setup = write_setup(chain, d)
    with pytest.raises(SetupFileError) as info:
        load_setup(setup)
    (err,) = info.value.errors
    assert err == (
        f"{setup}: Functions[3].Fkt_3.fkt_name: module 'labpkg.sinks' has no function 'colect' (found there: collect)"
    )


def test_unknown_function_of_a_packaged_module_lists_what_it_offers(chain):
    d = base(chain)
    d["Functions"][3]["Fkt_3"]["file_name"] = "mimocorb.exporters"
    d["Functions"][3]["Fkt_3"]["fkt_name"] = "save_parket"
    setup = write_setup(chain, d)
    with pytest.raises(SetupFileError) as info:
        load_setup(setup)
    (err,) = info.value.errors
    assert err.startswith(
        f"{setup}: Functions[3].Fkt_3.fkt_name: module 'mimocorb.exporters' has no function 'save_parket'"
    )
    assert "save_parquet" in err and "save_to_txt" in err


def test_packaged_demo_functions_are_found_by_module_name(chain):
    d = base(chain)
    d["Functions"][3]["Fkt_3"]["file_name"] = "mimocorb.demo"
    d["Functions"][3]["Fkt_3"]["fkt_name"] = "save_decays"
    f = {x.key: x for x in load_setup(write_setup(chain, d)).functions}["Fkt_3"]
    assert f.module.name == "mimocorb.demo" and f.module_path is None


def test_a_path_with_a_slash_is_never_a_module_name(chain, site):
    _labpkg(site)
    d = base(chain)
    d["Functions"][3]["Fkt_3"]["file_name"] = "labpkg/sinks"  # the package exists, but not beside the setup
    setup = write_setup(chain, d)
    with pytest.raises(SetupFileError) as info:
        load_setup(setup)
    (err,) = info.value.errors
    assert err.startswith(f"{setup}: Functions[3].Fkt_3.file_name: module file not found: {chain / 'labpkg/sinks.py'}")


def test_a_file_beside_the_setup_wins_over_a_module_of_that_name(chain, site):
    (site / "samename.py").write_text("def from_module(*a, **k):\n    pass\n")
    (chain / "samename.py").write_text(
        "from mimocorb.buffer_control import rbDrain\n\n\n"
        "def from_file(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info):\n"
        "    rbDrain(source_list=source_list, config_dict=config_dict, **rb_info)()\n"
    )
    d = base(chain)
    d["Functions"][3]["Fkt_3"]["file_name"] = "samename"
    d["Functions"][3]["Fkt_3"]["fkt_name"] = "from_file"
    setup = write_setup(chain, d)
    f = {x.key: x for x in load_setup(setup).functions}["Fkt_3"]
    assert f.module_path == chain / "samename.py" and f.module.name is None
    d["Functions"][3]["Fkt_3"]["fkt_name"] = "from_module"  # only the module has it: the file was taken
    with pytest.raises(SetupFileError) as info:
        load_setup(write_setup(chain, d))
    assert f"{chain / 'samename.py'} has no function 'from_module'" in str(info.value)
    # and a run uses the file: the workers follow the same rule
    d["Functions"][3]["Fkt_3"]["fkt_name"] = "from_file"
    out = chain / "out"
    res = run_cli(["run", write_setup(chain, d), "--headless", "--output", out, "-q"], timeout=90)
    assert res.returncode == 0, res.stdout + res.stderr
    s = summary(run_folder(out))
    assert s["buffers"]["RB_2"]["groups"][0]["consumed"] == s["buffers"]["RB_2"]["events"] > 0
