"""train.py: the classic defaults, exact resume, atomic checkpoints, signals, the NaN guard and clear errors.

Everything runs SSD300 on the CPU on a generated 4-image VOC-layout dataset, at batch 1 (batch 2, two batches per
epoch, where the data order matters), so every test takes only a few steps of a few seconds each.
"""

from __future__ import annotations

import errno
import math
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

import train
from benchmarks.repo import REPO_ROOT
from tests.argv import train_argv
from utils.cli import choose_device
from utils.training.log import read_log

pytestmark = [pytest.mark.filterwarnings("ignore:--basenet none:UserWarning"), pytest.mark.usefixtures("one_thread")]


def exit_code(argv: list[str]) -> int:
    """train.main's exit code: returned (0, 130, 143) or raised as SystemExit (2, a user error, as argparse)."""
    try:
        return train.main(argv)
    except SystemExit as exit_info:
        return int(exit_info.code)


def _losses(folder) -> list[tuple[float, float]]:
    log = read_log(os.path.join(folder, "train_log.csv"))
    return list(zip(log["loss_l"], log["loss_c"]))


def _parse(*argv: str):
    return train.resolve_defaults(train.build_parser().parse_args(list(argv)))


# ----------------------------------------------------------------------------------------------- arguments


def test_defaults_are_the_classic_recipe() -> None:
    args = _parse()
    assert (args.dataset, args.size, args.batch_size, args.num_workers) == ("VOC", 300, 32, 4)
    assert (args.lr, args.momentum, args.weight_decay, args.gamma) == (1e-3, 0.9, 5e-4, 0.1)
    assert (args.max_iter, args.lr_steps, args.warmup, args.clip_grad) == (120000, [80000, 100000, 120000], 0, 0)
    assert args.basenet == os.path.join("weights", "vgg16_reducedfc.pth")
    assert (args.save_every, args.amp, args.batch_norm, args.visdom) == (5000, "none", False, False)
    assert args.image_sets == "2007:trainval,2012:trainval"
    assert choose_device(args.cuda).type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_coco_and_batch_norm_defaults() -> None:
    coco = _parse("--dataset", "coco", "--size", "512")
    assert (coco.dataset, coco.max_iter, coco.lr_steps, coco.image_sets) == (
        "COCO",
        400000,
        [280000, 360000, 400000],
        "train2014",
    )
    bn = _parse("--batch_norm", "true")
    assert (bn.batch_norm, bn.lr, bn.warmup, bn.clip_grad, bn.basenet) == (True, 1e-3, 300, 0.0, "none")
    overridden = _parse("--batch_norm", "true", "--lr", "2e-3", "--warmup", "0", "--clip_grad", "10")
    assert (overridden.lr, overridden.warmup, overridden.clip_grad) == (2e-3, 0, 10.0)
    assert _parse("--batch_norm", "false", "--visdom", "True").visdom is True


def test_bad_boolean_is_rejected(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--batch_norm", "maybe"])
    assert exit_info.value.code == 2
    assert "expected true or false" in capsys.readouterr().err


def test_import_does_no_work(tmp_path) -> None:
    """Importing parses no arguments, reads and writes no files (a bogus command line goes unnoticed)."""
    code = f"import sys; sys.path.insert(0, {str(REPO_ROOT)!r}); sys.argv = ['train.py', '--bogus']; import train"
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stderr == ""
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------------------------- clear errors


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("train.py: error: ")
    return err[0]


def test_missing_dataset_root_is_one_clear_line(tmp_path, fail_line) -> None:
    """A user error exits as every script's does: one line, SystemExit(2) (argparse's way), not a returned 2."""
    missing = str(tmp_path / "no_such_root")
    line = fail_line(train.main, train_argv(missing, tmp_path / "w", "--max_iter", "1"))
    assert line.startswith("train.py: error: ") and missing in line and "--dataset_root" in line


def test_missing_basenet_says_how_to_obtain_it(tiny_voc, tmp_path, capsys) -> None:
    argv = train_argv(tiny_voc, tmp_path / "w", "--max_iter", "1")
    argv[argv.index("--basenet") + 1] = str(tmp_path / "vgg16_reducedfc.pth")
    assert exit_code(argv) == 2
    line = _one_error_line(capsys)
    assert "vgg16_reducedfc.pth not found" in line
    assert "weights/README.md" in line and "python -m weights.convert_vgg16" in line and "--basenet none" in line


def test_unreadable_resume_file_is_one_clear_line(tiny_voc, tmp_path, capsys) -> None:
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(b"not a checkpoint")
    assert exit_code(train_argv(tiny_voc, tmp_path / "w", "--max_iter", "1", "--resume", str(broken))) == 2
    assert str(broken) in _one_error_line(capsys)


def test_batch_larger_than_the_dataset_is_one_clear_line(tiny_voc, tmp_path, capsys) -> None:
    assert exit_code(_batch(64, train_argv(tiny_voc, tmp_path / "w", "--max_iter", "1"))) == 2
    assert "fewer than one batch" in _one_error_line(capsys)


def _write_tiny_coco(root) -> None:
    """Two 120x100 images in ``root/images/train2014`` with one "person" box each, as pycocotools reads them."""
    import json

    import cv2
    import numpy as np

    (root / "images" / "train2014").mkdir(parents=True)
    (root / "annotations").mkdir()
    images, annotations = [], []
    for i in (1, 2):
        name = f"COCO_train2014_{i:012d}.jpg"
        cv2.imwrite(str(root / "images" / "train2014" / name), np.full((100, 120, 3), 60 * i, np.uint8))
        images.append({"id": i, "width": 120, "height": 100, "file_name": name})
        bbox = [10 * i, 20, 50, 40]
        annotations.append({"id": i, "image_id": i, "category_id": 1, "bbox": bbox, "iscrowd": 0, "area": 2000})
    content = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "person"}]}
    (root / "annotations" / "instances_train2014.json").write_text(json.dumps(content))


def test_coco_trains_an_81_class_model(tmp_path) -> None:
    root, folder = tmp_path / "coco", tmp_path / "w"
    _write_tiny_coco(root)
    assert train.main(train_argv(str(root), folder, "--dataset", "COCO", "--max_iter", "1")) == 0
    ckpt = torch.load(folder / "ssd300_COCO_last.ckpt", weights_only=True)
    facts = ckpt["model_facts"]
    assert (facts["num_classes"], facts["prior_config"]["name"], len(facts["class_names"])) == (81, "COCO", 80)
    assert ckpt["args"]["image_sets"] == "train2014" and (folder / "ssd300_COCO_1.pth").is_file()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_one_clear_line(tiny_voc, tmp_path, capsys) -> None:
    argv = train_argv(tiny_voc, tmp_path / "w", "--max_iter", "1")
    argv[argv.index("--cuda") + 1] = "true"
    assert exit_code(argv) == 2
    assert "no CUDA device is available" in _one_error_line(capsys)


def test_a_class_missing_from_the_classes_file_is_one_clear_line(tiny_voc, tmp_path, capsys) -> None:
    classes = tmp_path / "classes.txt"
    classes.write_text("car\n")
    assert exit_code(train_argv(tiny_voc, tmp_path / "w", "--max_iter", "1", "--classes", str(classes))) == 2
    line = _one_error_line(capsys)
    assert str(classes) in line and "does not list" in line and ".xml has objects of class" in line


def test_a_custom_class_list_sets_the_number_of_classes(tiny_voc, tmp_path) -> None:
    from data.synthetic import SYNTHETIC_CLASSES

    classes = tmp_path / "classes.txt"
    classes.write_text("\n".join(SYNTHETIC_CLASSES) + "\n")
    folder = tmp_path / "w"
    assert train.main(train_argv(tiny_voc, folder, "--max_iter", "1", "--classes", str(classes))) == 0
    ckpt = torch.load(folder / "ssd300_VOC_last.ckpt", weights_only=True)
    facts = ckpt["model_facts"]
    assert facts["num_classes"] == len(SYNTHETIC_CLASSES) + 1 and facts["class_names"] == list(SYNTHETIC_CLASSES)
    assert ckpt["model"]["conf.0.weight"].shape[0] == 4 * (len(SYNTHETIC_CLASSES) + 1)


# ----------------------------------------------------------------------------------------------- resume


def _check_checkpoint(path: str, iteration: int) -> dict:
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    assert ckpt["iteration"] == iteration
    facts = ckpt["model_facts"]
    assert (facts["size"], facts["num_classes"], facts["prior_config"]["name"], facts["batch_norm"]) == (
        300, 21, "VOC", False,
    )  # fmt: skip
    assert len(facts["class_names"]) == 20 and facts["class_names"][0] == "aeroplane"
    assert isinstance(ckpt["args"], dict) and ckpt["args"]["seed"] == 3
    assert {"model", "optimizer", "scheduler", "rng"} <= set(ckpt)
    return ckpt


def _batch(size: int, argv: list[str]) -> list[str]:
    argv[argv.index("--batch_size") + 1] = str(size)
    return argv


def test_resume_continues_exactly(tiny_voc, tmp_path) -> None:
    """3 iterations in one go == 1 iteration, stop, --resume _last.ckpt, 2 more: losses and weights bit-equal.

    Batch 2 of 4 images: the resumed run starts mid-epoch and crosses into the next epoch (a new order and new
    augmentation draws); the schedule has a warm-up and an lr step, and gradients are clipped.
    """
    schedule = ("--warmup", "2", "--lr_steps", "2", "--clip_grad", "5", "--save_every", "100")
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert train.main(_batch(2, train_argv(tiny_voc, whole, "--max_iter", "3", *schedule))) == 0
    assert train.main(_batch(2, train_argv(tiny_voc, parts, "--max_iter", "1", *schedule))) == 0
    _check_checkpoint(str(parts / "ssd300_VOC_last.ckpt"), 1)
    resume = ["--resume", str(parts / "ssd300_VOC_last.ckpt"), "--max_iter", "3"]
    assert train.main(_batch(2, train_argv(tiny_voc, parts, *resume))) == 0

    assert len(_losses(whole)) == 3 and all(math.isfinite(v) for pair in _losses(whole) for v in pair)
    assert _losses(parts) == _losses(whole)
    assert read_log(str(parts / "train_log.csv"))["lr"] == read_log(str(whole / "train_log.csv"))["lr"]
    final_whole = torch.load(whole / "ssd300_VOC_3.pth", weights_only=True)
    final_parts = torch.load(parts / "ssd300_VOC_3.pth", weights_only=True)
    assert final_whole.keys() == final_parts.keys()
    assert all(torch.equal(final_whole[k], final_parts[k]) for k in final_whole)
    _check_checkpoint(str(parts / "ssd300_VOC_last.ckpt"), 3)
    assert (parts / "loss.png").is_file()


@pytest.mark.slow
def test_resume_continues_exactly_with_dataloader_workers(tiny_voc, tmp_path) -> None:
    def argv(folder, *extra: str) -> list[str]:
        args = _batch(2, train_argv(tiny_voc, folder, "--save_every", "100", *extra))
        args[args.index("--num_workers") + 1] = "2"
        return args

    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert train.main(argv(whole, "--max_iter", "3")) == 0
    assert train.main(argv(parts, "--max_iter", "1")) == 0
    assert train.main(argv(parts, "--max_iter", "3", "--resume", str(parts / "ssd300_VOC_last.ckpt"))) == 0
    assert _losses(parts) == _losses(whole)


def test_a_full_checkpoint_resumes_with_its_own_args(tiny_voc, tmp_path, capsys) -> None:
    """``--resume X.ckpt`` continues the recorded run (seed, data, schedule); solver flags given still win;
    locations come from the command line."""
    folder = tmp_path / "w"
    assert train.main(train_argv(tiny_voc, folder, "--max_iter", "1", "--lr", "5e-4")) == 0
    ckpt = str(folder / "ssd300_VOC_last.ckpt")
    where = ["--dataset_root", tiny_voc, "--save_folder", str(folder), "--num_workers", "0", "--cuda", "false"]
    assert train.main(["--resume", ckpt, "--max_iter", "2", *where]) == 0
    out = capsys.readouterr().out
    assert f"from {ckpt}: " in out and "--seed 3" in out and "--lr 0.0005" in out
    log = read_log(str(folder / "train_log.csv"))
    assert log["iter"] == [1, 2] and log["lr"] == [5e-4, 5e-4]
    assert torch.load(ckpt, weights_only=True)["args"]["seed"] == 3
    assert train.main(["--resume", ckpt, "--max_iter", "3", "--lr", "1e-5", *where]) == 0
    assert "solver flags given on resume: --lr 1e-05" in capsys.readouterr().out
    assert read_log(str(folder / "train_log.csv"))["lr"] == [5e-4, 5e-4, 1e-5]


def test_resume_takes_locations_from_the_command_line(tiny_voc, tmp_path, capsys) -> None:
    """A moved run writes where it is told, and a changed data order is reported, not silent."""
    first, moved = tmp_path / "first", tmp_path / "moved"
    assert train.main(train_argv(tiny_voc, first, "--max_iter", "1")) == 0
    ckpt = str(first / "ssd300_VOC_last.ckpt")
    argv = _batch(2, train_argv(tiny_voc, moved, "--max_iter", "2", "--resume", ckpt))
    assert train.main(argv) == 0
    assert "no longer an exact continuation" in capsys.readouterr().out
    assert (moved / "ssd300_VOC_2.pth").is_file() and not (first / "ssd300_VOC_2.pth").exists()
    assert torch.load(moved / "ssd300_VOC_last.ckpt", weights_only=True)["iteration"] == 2


def test_resume_rejects_a_flag_that_contradicts_the_model(tiny_voc, tmp_path, capsys) -> None:
    folder = tmp_path / "w"
    assert train.main(train_argv(tiny_voc, folder, "--max_iter", "1")) == 0
    resume = ["--resume", str(folder / "ssd300_VOC_last.ckpt"), "--max_iter", "2", "--size", "512"]
    assert exit_code(train_argv(tiny_voc, folder, *resume)) == 2
    assert "--size 512 contradicts" in _one_error_line(capsys)


def test_every_flag_has_a_resume_rule() -> None:
    from utils.training.resume import RULES

    dests = {a.dest for a in train.build_parser()._actions if a.dest != "help"}
    assert dests == set(RULES)


def test_a_new_run_never_overwrites_another_run(tiny_voc, tmp_path, capsys) -> None:
    folder = tmp_path / "w"
    assert train.main(train_argv(tiny_voc, folder, "--max_iter", "1")) == 0
    before = (folder / "ssd300_VOC_last.ckpt").read_bytes()
    assert exit_code(train_argv(tiny_voc, folder, "--max_iter", "1")) == 2
    line = _one_error_line(capsys)
    assert "holds another run" in line and "--resume" in line and "--overwrite true" in line
    assert (folder / "ssd300_VOC_last.ckpt").read_bytes() == before
    assert train.main(train_argv(tiny_voc, folder, "--max_iter", "1", "--overwrite", "true")) == 0


def test_a_new_run_never_overwrites_another_models_weights(tiny_voc, tmp_path, capsys) -> None:
    """A folder holding only another model's weights and sidecar (no checkpoint, no log) is another run's too."""
    folder = tmp_path / "w"
    folder.mkdir()
    for name in ("ssd300_VOC_1.pth", "ssd300_VOC_1.json", "ssdlite320_VOC_best.pth"):
        (folder / name).write_bytes(b"another model")
    assert exit_code(train_argv(tiny_voc, folder, "--max_iter", "1")) == 2
    assert "holds another run (ssd300_VOC_1.json, ssd300_VOC_1.pth, ssdlite320_VOC_best.pth)" in _one_error_line(capsys)
    assert all((folder / name).read_bytes() == b"another model" for name in os.listdir(folder))


def test_a_save_folder_inside_a_file_is_one_line_naming_it(tiny_voc, tmp_path, capsys) -> None:
    (tmp_path / "weights").write_text("a file")
    assert exit_code(train_argv(tiny_voc, tmp_path / "weights" / "run", "--max_iter", "1")) == 2
    assert _one_error_line(capsys).endswith(f"{tmp_path / 'weights'} is a file, not a folder")


def test_a_full_disk_during_a_save_is_one_line_and_loses_nothing(tiny_voc, tmp_path, monkeypatch, capsys) -> None:
    folder = tmp_path / "w"
    real_save, saves = torch.save, []

    def save_until_the_disk_is_full(obj, f, *args, **kwargs):
        saves.append(obj)
        if len(saves) > 2:  # iteration 1 wrote its .pth and _last.ckpt; iteration 2's .pth finds the disk full
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_until_the_disk_is_full)
    assert exit_code(train_argv(tiny_voc, folder, "--max_iter", "2", "--save_every", "1")) == 2
    monkeypatch.undo()
    line = _one_error_line(capsys)
    assert line.endswith(f"No space left on device: '{folder / 'ssd300_VOC_2.pth'}'")
    assert torch.load(folder / "ssd300_VOC_last.ckpt", weights_only=True)["iteration"] == 1  # --resume goes on
    assert not (folder / "ssd300_VOC_2.pth").exists() and not [n for n in os.listdir(folder) if n.endswith(".tmp")]


def test_a_coco_split_without_annotations_does_not_train(tmp_path, capsys) -> None:
    import json

    root = tmp_path / "coco"
    _write_tiny_coco(root)
    ann = root / "annotations" / "instances_train2014.json"
    ann.write_text(json.dumps({k: v for k, v in json.loads(ann.read_text()).items() if k != "annotations"}))
    assert exit_code(train_argv(str(root), tmp_path / "w", "--dataset", "COCO", "--max_iter", "1")) == 2
    assert "COCO split train2014 of" in (line := _one_error_line(capsys)) and "has no annotations to train on" in line
    assert not (tmp_path / "w").exists()


def test_a_state_dict_resume_loads_weights_and_starts_at_start_iter(tiny_voc, tmp_path) -> None:
    first = tmp_path / "first"
    assert train.main(train_argv(tiny_voc, first, "--max_iter", "1")) == 0
    weights = first / "ssd300_VOC_1.pth"
    second = tmp_path / "second"
    resume = ["--resume", str(weights), "--start_iter", "5", "--max_iter", "6", "--lr_steps", "5"]
    assert train.main(train_argv(tiny_voc, second, *resume)) == 0
    log = read_log(str(second / "train_log.csv"))
    assert log["iter"] == [6] and log["lr"] == [pytest.approx(1e-4)]
    assert (second / "ssd300_VOC_6.pth").is_file()
    assert torch.load(second / "ssd300_VOC_last.ckpt", weights_only=True)["iteration"] == 6


def test_a_checkpoint_for_other_classes_names_the_keys(tiny_voc, tmp_path, capsys) -> None:
    from ssd import build_ssd

    other = tmp_path / "other.pth"
    torch.save(build_ssd("train", 300, num_classes=5).state_dict(), other)
    assert exit_code(train_argv(tiny_voc, tmp_path / "w", "--max_iter", "1", "--resume", str(other))) == 2
    line = _one_error_line(capsys)
    assert str(other) in line and "conf.0.weight" in line


def test_bf16_autocast_trains(tiny_voc, tmp_path) -> None:
    folder = tmp_path / "w"
    assert train.main(train_argv(tiny_voc, folder, "--max_iter", "1", "--amp", "bf16")) == 0
    assert all(math.isfinite(v) for pair in _losses(folder) for v in pair)
    state = torch.load(folder / "ssd300_VOC_1.pth", weights_only=True)
    assert state["vgg.0.weight"].dtype == torch.float32


# ----------------------------------------------------------------------------------------------- robustness


def test_a_kill_during_a_checkpoint_write_leaves_the_previous_one(tiny_voc, tmp_path) -> None:
    """The training process dies half-way through writing the second _last.ckpt: the first still loads."""
    folder = tmp_path / "w"
    script = textwrap.dedent(f"""
        import os, torch, train
        real_save, calls = torch.save, []
        def dying_save(obj, f, *a, **k):
            calls.append(1)
            real_save(obj, f, *a, **k)
            if len(calls) == 4:  # iteration 2: .pth, then the checkpoint -- die half-way through it
                f.flush()
                f.truncate(f.tell() // 2)
                os._exit(9)
        torch.save = dying_save
        torch.set_num_threads(1)
        train.main({train_argv(tiny_voc, folder, "--max_iter", "2", "--save_every", "1")!r})
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 9, proc.stderr[-2000:]
    _check_checkpoint(str(folder / "ssd300_VOC_last.ckpt"), 1)
    assert torch.load(folder / "ssd300_VOC_2.pth", weights_only=True).keys()
    stray = [n for n in os.listdir(folder) if n.endswith(".tmp")]
    assert len(stray) == 1 and stray[0].startswith(".")


def test_sigterm_saves_both_files_for_the_current_iteration(tiny_voc, tmp_path, monkeypatch, capsys) -> None:
    class SignalledLoss(train.MultiBoxLoss):
        def sums(self, predictions, targets):
            os.kill(os.getpid(), signal.SIGTERM)  # arrives during iteration 1
            return super().sums(predictions, targets)

    monkeypatch.setattr(train, "MultiBoxLoss", SignalledLoss)
    folder = tmp_path / "w"
    handler = signal.getsignal(signal.SIGTERM)
    assert train.main(train_argv(tiny_voc, folder, "--max_iter", "50")) == 143
    assert "stopped by SIGTERM at iteration 1" in capsys.readouterr().out
    assert (folder / "ssd300_VOC_1.pth").is_file() and (folder / "ssd300_VOC_1.json").is_file()
    _check_checkpoint(str(folder / "ssd300_VOC_last.ckpt"), 1)
    assert signal.getsignal(signal.SIGTERM) is handler


@pytest.mark.slow
def test_ctrl_c_from_outside_saves_and_exits_cleanly(tiny_voc, tmp_path) -> None:
    """A real SIGINT to a training process with a DataLoader worker: both files for the iteration it reached."""
    folder = tmp_path / "w"
    argv = train_argv(tiny_voc, folder, "--max_iter", "1000")
    argv[argv.index("--num_workers") + 1] = "1"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "train.py", *argv],
        cwd=REPO_ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        for line in proc.stdout:
            if line.startswith("iter "):
                break
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-2000:]
    reached = int(out.split("stopped by SIGINT at iteration ")[1].split(";")[0])
    assert reached >= 1
    assert (folder / f"ssd300_VOC_{reached}.pth").is_file()
    _check_checkpoint(str(folder / "ssd300_VOC_last.ckpt"), reached)


def _loss_with_nan_at(calls: set[int]) -> type:
    class NanLoss(train.MultiBoxLoss):
        count = 0

        def sums(self, predictions, targets):
            NanLoss.count += 1
            loss_l, loss_c, num_pos = super().sums(predictions, targets)
            return (loss_l * math.nan if NanLoss.count in calls else loss_l), loss_c, num_pos

    return NanLoss


def test_a_non_finite_loss_skips_the_step(tiny_voc, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(train, "MultiBoxLoss", _loss_with_nan_at({1}))
    folder = tmp_path / "w"
    with pytest.warns(RuntimeWarning, match="iteration 1: non-finite loss"):
        assert train.main(train_argv(tiny_voc, folder, "--max_iter", "2")) == 0
    assert read_log(str(folder / "train_log.csv"))["iter"] == [2]


def test_non_finite_losses_in_a_row_stop_training(tiny_voc, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(train, "MultiBoxLoss", _loss_with_nan_at(set(range(1, 100))))
    monkeypatch.setattr(train, "MAX_NONFINITE_STEPS", 2)
    with pytest.warns(RuntimeWarning, match="non-finite loss"):
        assert exit_code(train_argv(tiny_voc, tmp_path / "w", "--max_iter", "20")) == 2
    assert "not finite for 2 iterations in a row" in _one_error_line(capsys)


def test_every_sample_bad_is_one_clear_line(tmp_path, capsys) -> None:
    from data.synthetic import make_voc_dataset

    root = make_voc_dataset(str(tmp_path / "voc"), num_train=2, num_test=0, seed=0)
    for picture in (tmp_path / "voc" / "VOC2007" / "JPEGImages").iterdir():
        picture.write_bytes(b"not a picture")
    assert exit_code(train_argv(root, tmp_path / "w", "--max_iter", "1", "--image_sets", "2007:trainval")) == 2
    line = _one_error_line(capsys)
    assert "all 2 samples are bad" in line and "cannot decode" in line
