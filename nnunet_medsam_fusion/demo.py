"""``nnmsf demo``: the whole pipeline on a small synthetic TOF-MRA set, through nnU-Net's own commands.

Everything lives in one working folder: nnU-Net's three folders are set for the child processes only, so
the user's real ``nnUNet_raw``/``nnUNet_preprocessed``/``nnUNet_results`` are never touched.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from nnunet_medsam_fusion.data.synthetic import SyntheticSet
from nnunet_medsam_fusion.evaluation.commands import compare_trainers
from nnunet_medsam_fusion.evaluation.comparison_tables import comparison_markdown
from nnunet_medsam_fusion.evaluation.figures import write_comparison_figures
from nnunet_medsam_fusion.foundation import MEDSAM2_CHECKPOINT_ENV, MEDSAM_CHECKPOINT_ENV
from nnunet_medsam_fusion.settings import checkpoint_path, ext_trainer_value

# Small enough for 2 CPU cores. 2d: nnU-Net plans 64x64 patches. 3d_fullres: nnU-Net's 3D patch is the whole
# volume, and a 3D U-Net step costs the whole patch, so the 3D demo's volumes are smaller (README: its time).
DEMO_SETS = {"2d": SyntheticSet(501, "SyntheticTOF", 8, 3, (64, 64, 24)),
             "3d_fullres": SyntheticSet(502, "SyntheticTOF3D", 8, 3, (40, 40, 16))}
BASE_TRAINERS = ("nnUNetTrainer_demo", "nnUNetTrainerFocalDice_demo")
# The paper's other Table 1 rows (``--table1``): its UNet, SwinUNet and TransUNet baselines (trainers/baselines.py).
TABLE1_BASELINES = ("nnUNetTrainerUNet_demo", "nnUNetTrainerSwinUNet_demo", "nnUNetTrainerTransUNet_demo")
# Per foundation family: its checkpoint variable, the full-size trainer and the tiny one.
FUSION_TRAINERS = (
    (MEDSAM_CHECKPOINT_ENV, "nnUNetTrainerMedSAMFusion_demo", "nnUNetTrainerMedSAMFusionTiny_demo"),
    (MEDSAM2_CHECKPOINT_ENV, "nnUNetTrainerMedSAM2Fusion_demo", "nnUNetTrainerMedSAM2FusionTiny_demo"),
)
# Lines of nnU-Net's output worth echoing as progress, per step (the rest goes to the step's log only).
PROGRESS = re.compile(r"Epoch \d+$|Pseudo dice|Mean Validation Dice|Training done|Traceback|Error")
PLAN_PROGRESS = re.compile(r"^(Fingerprint extraction|Experiment planning|Preprocessing)\.\.\.$|^Configuration: |"
                           r"Traceback|Error")
PREDICT_PROGRESS = re.compile(r"cases that I would like to predict|^Predicting |^done with |Traceback|Error")
EPOCH = re.compile(r"^Epoch (\d+)$")  # nnU-Net counts epochs from 0
NNUNET_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: ")  # what its log lines start with


def progress_line(step: str, line: str, elapsed: float, epochs: int | None = None) -> str:
    """What the demo echoes of one of nnU-Net's progress lines: an epoch line becomes which step, epoch k of n
    (from 1) and the time so far; other lines lose nnU-Net's timestamp."""
    text = NNUNET_TIMESTAMP.sub("", line.strip())
    epoch = EPOCH.match(text)
    if epoch is None:
        return f"  {text}"
    return f"  [{step}] epoch {int(epoch[1]) + 1}{f' of {epochs}' if epochs else ''}, {elapsed:.0f} s so far"


def schedule_epochs(trainer: str) -> int | None:
    """The number of epochs a declared trainer trains (None for a trainer this package does not declare)."""
    from nnunet_medsam_fusion.trainers import TRAINERS

    declared = TRAINERS.get(trainer)
    return declared.schedule.epochs if declared is not None and declared.schedule is not None else None


def default_trainers(device: str) -> tuple[str, ...]:
    """Baseline, focal loss and both fusion trainers.

    A fusion trainer uses the real encoder when its checkpoint variable is set and the demo runs on a GPU;
    otherwise a tiny random encoder of the real classes (a ViT-B forward at 1024² is GPU work).
    """
    fusion = []
    for variable, full_size, tiny in FUSION_TRAINERS:
        if checkpoint_path(variable) and device == "cpu":
            print(f"note: {variable} is set, but the full-size encoder is GPU work; the CPU demo uses {tiny}")
        fusion.append(full_size if checkpoint_path(variable) and device != "cpu" else tiny)
    return BASE_TRAINERS + tuple(fusion)


def _child_env(workdir: Path, device: str, trainers: list[str]) -> dict[str, str]:
    env = dict(os.environ)  # the children's environment; ours stays as it is
    env.update(nnUNet_raw=str(workdir / "nnUNet_raw"), nnUNet_preprocessed=str(workdir / "nnUNet_preprocessed"),
               nnUNet_results=str(workdir / "nnUNet_results"), nnUNet_extTrainer=ext_trainer_value(),
               nnUNet_def_n_proc=str(min(os.cpu_count() or 1, 4)))  # nnU-Net spawns 8 workers by default
    for variable, full_size, _ in FUSION_TRAINERS:
        if full_size not in trainers:  # a tiny encoder must not try to load a full-size checkpoint
            env.pop(variable, None)
    if device == "cpu":
        env["nnUNet_compile"] = "f"
    return env


def _run(step: str, command: list[str], env: dict[str, str], log: Path, progress: re.Pattern | None = None,
         epochs: int | None = None) -> None:
    """Runs one nnU-Net command, logging everything to ``log`` and echoing its lines that match ``progress``
    (nnU-Net's own progress lines: no step waits minutes in silence). An interrupt ends the command too."""
    start = time.time()
    print(f"\n[{step}] {' '.join(command)}\n  log: {log}", flush=True)
    with open(log, "w") as out:
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            for line in process.stdout:
                out.write(line)
                if progress is not None and progress.search(line.strip()):
                    print(progress_line(step, line, time.time() - start, epochs), flush=True)
        finally:
            if process.poll() is None and sys.exc_info()[0] is not None:
                process.terminate()
            process.wait()
    if process.returncode != 0:
        raise RuntimeError(f"{step} failed (exit code {process.returncode}); see {log}")
    print(f"  done in {time.time() - start:.0f} s", flush=True)


def run_demo(workdir: Path = Path("nnmsf_demo"), device: str = "auto", fresh: bool = False,
             trainers: list[str] | None = None, table1: bool = False, three_d: bool = False) -> int:
    """Synthesise, plan and preprocess, train, predict and compare; returns a process exit code.

    ``three_d``: the same trainers on nnU-Net's ``3d_fullres`` (the fused network in 3D) of the demo's 3D set; the
    Table 1 baselines are 2D architectures and are not part of it.
    """
    start = time.time()
    workdir = Path(workdir).resolve()
    device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    if table1 and trainers:
        raise ValueError("--table1 chooses the trainers (the seven rows of the paper's Table 1); "
                         "use either --table1 or --trainers.")
    if table1 and three_d:
        raise ValueError("--table1 adds the paper's 2D baselines (UNet, SwinUNet, TransUNet), which have no 3D "
                         "form; use --3d without --table1.")
    configuration = "3d_fullres" if three_d else "2d"
    trainers = list(trainers or ((TABLE1_BASELINES if table1 else ()) + default_trainers(device)))
    if fresh and workdir.exists():
        shutil.rmtree(workdir)
    (workdir / "logs").mkdir(parents=True, exist_ok=True)
    env = _child_env(workdir, device, trainers)
    bin_dir = Path(sys.executable).parent
    print(f"nnmsf demo ({configuration}) in {workdir} on {device}; trainers: {', '.join(trainers)}")

    demo_set = DEMO_SETS[configuration]
    raw = workdir / "nnUNet_raw" / demo_set.dataset
    if not (raw / "dataset.json").is_file():
        print(f"\n[synth] writing the synthetic TOF-MRA data set {demo_set.dataset}", flush=True)
        demo_set.write(workdir / "nnUNet_raw")
    dataset_id = str(demo_set.dataset_id)
    if not (workdir / "nnUNet_preprocessed" / demo_set.dataset / f"nnUNetPlans_{configuration}").is_dir():
        plan_env = {k: v for k, v in env.items() if k != "nnUNet_n_proc_DA"}  # 2.8.1's planner crashes with it
        _run("plan+preprocess", [str(bin_dir / "nnUNetv2_plan_and_preprocess"), "-d", dataset_id, "-c",
                                 configuration, "-np", "2"], plan_env,
             workdir / "logs" / f"plan_and_preprocess_{configuration}.log", PLAN_PROGRESS)

    suffix = "_3d" if three_d else ""
    predictions = workdir / f"predictions{suffix}"
    for trainer in trainers:
        model = workdir / "nnUNet_results" / demo_set.dataset / f"{trainer}__nnUNetPlans__{configuration}" / "fold_0"
        if (model / "checkpoint_final.pth").is_file():
            print(f"\n[train {trainer}] already trained in {model}; reusing it (use --fresh to retrain)")
        else:
            train_env = dict(env, nnUNet_n_proc_DA="0") if device == "cpu" else env
            _run(f"train {trainer}", [str(bin_dir / "nnUNetv2_train"), dataset_id, configuration, "0", "-tr",
                                      trainer, "-device", device], train_env,
                 workdir / "logs" / f"train_{trainer}_{configuration}.log", PROGRESS, schedule_epochs(trainer))
        out = predictions / trainer
        shutil.rmtree(out, ignore_errors=True)
        _run(f"predict {trainer}", [str(bin_dir / "nnUNetv2_predict"), "-i", str(raw / "imagesTs"), "-o", str(out),
                                    "-d", dataset_id, "-c", configuration, "-f", "0", "-tr", trainer, "-device",
                                    device, "-npp", "1", "-nps", "1"], env,
             workdir / "logs" / f"predict_{trainer}_{configuration}.log", PREDICT_PROGRESS)

    print("\n[compare] scoring the test predictions against labelsTs", flush=True)
    out = workdir / f"comparison{suffix}"
    comparison = compare_trainers(demo_set.dataset, trainers, configuration=configuration,
                                  pred_dirs={t: predictions / t for t in trainers}, ref_dir=raw / "labelsTs",
                                  dataset_json=raw / "dataset.json", results_dir=workdir / "nnUNet_results",
                                  out_dir=out, overwrite=True)
    write_comparison_figures(comparison, out / "figures", image_dir=raw / "imagesTs")
    print(comparison_markdown(comparison))
    print(f"\nTables and CSVs: {out}; figures: {out / 'figures'}")
    print(f"nnmsf demo finished in {time.time() - start:.0f} s")
    return 0
