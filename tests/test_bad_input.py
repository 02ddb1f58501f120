"""Bad input: exit code 2, one line naming the file, the record and the problem, nothing written."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from citune.cli import main

TINY = Path(__file__).resolve().parents[1] / "examples" / "tiny.yaml"


def run_cli(args, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["citune", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err.strip()
    return exit_info.value.code, err


def tasks_config(tmp_path, tasks, extra=""):
    lines = ["model: {name: tiny}", "data:", "  kind: tasks", "  test_size: 2", "  tasks:"]
    for name, path in tasks:
        lines += [f"    - name: {json.dumps(name)}", f"      sources: [{{path: {json.dumps(str(path))}}}]"]
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("\n".join(lines) + "\n" + extra)
    return cfg


def alpaca(path, n=6, broken_line=None):
    rows = [json.dumps({"instruction": "Copy.", "input": str(i), "output": str(i)}) for i in range(n)]
    if broken_line is not None:
        rows[broken_line - 1] = '{"instruction": "Copy.", "input": '
    path.write_text("\n".join(rows) + "\n")
    return path


def expect_error(capsys, monkeypatch, tmp_path, args, *needles):
    code, err = run_cli(["run", *args, "-o", tmp_path / "out"], capsys, monkeypatch)
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    assert not (tmp_path / "out").exists(), "a bad input must not leave a half-written run"


def test_missing_config_file(capsys, monkeypatch, tmp_path):
    expect_error(capsys, monkeypatch, tmp_path, [tmp_path / "nope.yaml"], "nope.yaml", "not found")


def test_missing_data_file(capsys, monkeypatch, tmp_path):
    cfg = tasks_config(tmp_path, [("a", tmp_path / "absent.jsonl")])
    expect_error(capsys, monkeypatch, tmp_path, [cfg], "absent.jsonl")


def test_invalid_jsonl_names_the_line(capsys, monkeypatch, tmp_path):
    cfg = tasks_config(tmp_path, [("a", alpaca(tmp_path / "a.jsonl", broken_line=4))])
    expect_error(capsys, monkeypatch, tmp_path, [cfg], "a.jsonl", "line 4")


def test_mistyped_field(capsys, monkeypatch, tmp_path):
    path = tmp_path / "a.jsonl"
    alpaca(path)
    rows = path.read_text().splitlines()
    rows[2] = json.dumps({"instruction": "Copy.", "input": "x", "output": 3})
    path.write_text("\n".join(rows) + "\n")
    expect_error(capsys, monkeypatch, tmp_path, [tasks_config(tmp_path, [("a", path)])], "a.jsonl", "line 3", "output")


def test_missing_field(capsys, monkeypatch, tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps({"instruction": "Copy.", "input": "x"}) + "\n")
    expect_error(capsys, monkeypatch, tmp_path, [tasks_config(tmp_path, [("a", path)])], "a.jsonl", "output")


def test_empty_task(capsys, monkeypatch, tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text("")
    expect_error(capsys, monkeypatch, tmp_path, [tasks_config(tmp_path, [("a", path)])], "a.jsonl")


def test_duplicate_task_names(capsys, monkeypatch, tmp_path):
    path = alpaca(tmp_path / "a.jsonl")
    expect_error(capsys, monkeypatch, tmp_path, [tasks_config(tmp_path, [("a", path), ("a", path)])], "duplicate")


def test_unknown_strategy(capsys, monkeypatch, tmp_path):
    expect_error(capsys, monkeypatch, tmp_path, [TINY, "replay.strategy=magic"], "magic", "unknown")


def test_unknown_config_key(capsys, monkeypatch, tmp_path):
    expect_error(capsys, monkeypatch, tmp_path, [TINY, "train.learning_rate=1"], "train.learning_rate", "unknown key")


@pytest.mark.parametrize("override", ["train.batch_size=0", "train.epochs=-1", "replay.per_task=-3",
                                      "data.synthetic.train_per_task=0"])
def test_zero_or_negative_sizes(capsys, monkeypatch, tmp_path, override):
    expect_error(capsys, monkeypatch, tmp_path, [TINY, override], override.split("=")[0])


def test_test_size_larger_than_data(capsys, monkeypatch, tmp_path):
    cfg = tasks_config(tmp_path, [("a", alpaca(tmp_path / "a.jsonl", n=4))])
    expect_error(capsys, monkeypatch, tmp_path, [cfg, "data.test_size=10"], "a")


def test_non_utf8_text(capsys, monkeypatch, tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"instruction": "Copy \xff", "input": "", "output": "x"}\n')
    expect_error(capsys, monkeypatch, tmp_path, [tasks_config(tmp_path, [("a", path)])], "a.jsonl", "UTF-8")


@pytest.mark.parametrize("name", ["../escape", "a/b", ".hidden"])
def test_task_name_that_escapes_the_run_directory(capsys, monkeypatch, tmp_path, name):
    cfg = tasks_config(tmp_path, [(name, alpaca(tmp_path / "a.jsonl"))])
    expect_error(capsys, monkeypatch, tmp_path, [cfg], name)


def test_real_process_prints_one_line_and_debug_shows_traceback(tmp_path):
    cmd = [sys.executable, "-m", "citune", "run", str(TINY), "replay.strategy=magic", "-o", str(tmp_path / "o")]
    plain = subprocess.run(cmd, capture_output=True, text=True)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    assert plain.stderr.strip().count("\n") == 0 and "magic" in plain.stderr
    debug = subprocess.run([sys.executable, "-m", "citune", "--debug", *cmd[3:]], capture_output=True, text=True)
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_unsupported_deepspeed_stage_stops_with_one_line(capsys, monkeypatch, tmp_path):
    """Under DeepSpeed ZeRO-1 (faked) the run stops before writing: stages 2 and 3 are supported."""
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    import citune.runs.runner as runner

    fake = SimpleNamespace(distributed_type=DistributedType.DEEPSPEED,
                           state=SimpleNamespace(deepspeed_plugin=SimpleNamespace(zero_stage=1)))
    monkeypatch.setattr(runner, "Accelerator", lambda **_: fake)
    expect_error(capsys, monkeypatch, tmp_path, [TINY], "accelerate launch", "DeepSpeed ZeRO stage 1 is not supported",
                 "stage 2 or 3")


def test_deepspeed_offload_is_refused():
    """Offloaded optimizer state or parameters are refused in one line, naming the setting."""
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    from citune.errors import InputError
    from citune.runs.runner import check_distributed

    def launch(zero):
        plugin = SimpleNamespace(zero_stage=3, deepspeed_config={"zero_optimization": zero})
        return SimpleNamespace(distributed_type=DistributedType.DEEPSPEED, state=SimpleNamespace(deepspeed_plugin=plugin))

    check_distributed(launch({"stage": 3, "offload_optimizer": {"device": "none"}}))  # the shipped profiles
    for zero, named in [({"offload_optimizer": {"device": "cpu"}}, "offload_optimizer"),
                        ({"offload_param": {"device": "nvme"}}, "offload_param")]:
        with pytest.raises(InputError, match=named):
            check_distributed(launch(zero))


def test_a_method_refuses_a_launch_it_cannot_train_under():
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    from citune.config import load_config
    from citune.errors import InputError
    from citune.replay import get_strategy
    from citune.runs.runner import check_method_setup

    def launch(kind):
        return SimpleNamespace(distributed_type=kind)

    cfg = load_config(None, ["replay.strategy=inscl+ewc"])
    check_method_setup(get_strategy("inscl+ewc", cfg), launch(DistributedType.MULTI_CPU))  # DDP: fine
    with pytest.raises(InputError, match="inscl\\+ewc does not run under FSDP"):
        check_method_setup(get_strategy("inscl+ewc", cfg), launch(DistributedType.FSDP))
    with pytest.raises(InputError, match="olora does not run under MULTI_GPU"):
        check_method_setup(get_strategy("olora", cfg), launch(DistributedType.MULTI_GPU))
    check_method_setup(get_strategy("inscl", cfg), launch(DistributedType.DEEPSPEED))  # replay alone: any launch
