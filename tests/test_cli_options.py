"""The command line spells each option once: training, pre-training and bench options are their config's
fields by name, and the commands that use a trained run share one set of run options."""

import argparse

from cmzoo.bench import BenchConfig
from cmzoo.cli import build_parser, given_fields
from cmzoo.config import TrainConfig


def subparsers() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {a.dest: a for a in parser._actions if a.option_strings and a.dest != "help"}


def test_every_training_and_bench_option_is_a_field_of_its_config():
    subs = subparsers()
    for command, model, own in (("train", TrainConfig, {"config", "resume"}), ("pretrain", TrainConfig, {"config", "resume"}),
                                ("bench", BenchConfig, {"config"})):
        assert set(options(subs[command])) - set(model.model_fields) == own, command


def test_the_given_options_become_config_fields_and_the_others_stay_unset():
    args = build_parser().parse_args(["train", "--batch-size", "4", "--set", "dim=8", "patch_size=null",
                                      "--class-conditional", "--out", "runs/x"])
    assert given_fields(args, TrainConfig) == {"batch_size": 4, "backbone_overrides": {"dim": 8, "patch_size": None},
                                               "class_conditional": True, "out": "runs/x"}
    args = build_parser().parse_args(["bench", "--resolutions", "16,32", "--train-set", "boundary_scale=10",
                                      "--steps-per-minute", "func=354"])
    assert given_fields(args, BenchConfig) == {"resolutions": [16, 32], "train_overrides": {"boundary_scale": 10},
                                               "steps_per_minute": {"func": 354}}


def test_the_commands_that_use_a_run_share_its_options_and_one_device_default():
    subs = subparsers()
    for command in ("sample", "render", "edit", "interpolate", "eval"):
        assert options(subs[command])["device"].default == "auto", command
    for command in ("sample", "edit", "interpolate"):
        assert options(subs[command])["weights"].choices == ("ema", "online", "target"), command
        assert options(subs[command])["run"].required, command
    for command in ("train", "pretrain", "bench"):  # the config's own default, "auto", applies
        assert options(subs[command])["device"].default is None
    assert TrainConfig().device == BenchConfig().device == "auto"
