"""The command line's first stop: Hydra's config errors as one line, before anything heavy is imported.

`main()` starts the Hydra app (`nst_research.app`, whose tasks load torch and Lightning) with a check that
runs as soon as Hydra has built its config loader: it composes the config for the command line's overrides
with Hydra's own parser and that loader, as Hydra is about to, so --config-dir, --config-path and
--config-name get the same checks as the plain command line. A misspelt key, an unknown group option,
`+` on a key that exists, bad override syntax or a wrong value for a typed key ends here: one line on stderr naming the
closest valid key or option, exit status 2, nothing written. In a multirun (-m) the check composes
the first job and one job per other value of each swept config group. A command line that passes
reaches Hydra unchanged; a new key can still be added with `+key=value`. HYDRA_FULL_ERROR=1 adds
Hydra's own error and traceback after the line. --help lists the config groups without Hydra's
copy of the config repository per call (`list_group_options_without_copies`). With `resume=<run dir>` the
run's own task and group options go first on the command line, so that Hydra composes, and the check checks,
that run's config. A full disk or read-only folder met by Hydra's own writes is one line, exit status 1.
"""

import argparse
import contextlib
import difflib
import gc
import os
import re
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import yaml
from hydra._internal import utils as hydra_utils
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.hydra import Hydra
from hydra._internal.utils import get_args_parser
from hydra.core import utils as hydra_core_utils
from hydra.core.config_loader import ConfigLoader
from hydra.core.config_search_path import ConfigSearchPath
from hydra.core.global_hydra import GlobalHydra
from hydra.core.object_type import ObjectType
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from nst_research.app import CONFIG_DIR, remove_unfinished_run_dir
from nst_research.app import main as run_app
from nst_research.errors import environment_fault

CONFIG_NAME = "config"
SWEEP_GROUPS = ("experiment", "hparams_search")  # groups that set up sweeps: a resumed run keeps their values only
HELP = "python scripts/run.py --help lists the options"
HYDRA_HELP = "python scripts/run.py --cfg hydra lists Hydra's settings"


class CommandLineError(Exception):
    """A mistake in the command line, worded for its user as `<problem>; <fix>`."""


def main() -> None:
    """Check the command line, then run the Hydra app (imported only now)."""
    args = get_args_parser().parse_args()
    if args.help or args.hydra_help:
        list_group_options_without_copies()
    run_options = resumed_run_options(args)
    if run_options:
        sys.argv[1:1] = run_options
        args = get_args_parser().parse_args()
    if args.config_dir is not None and not Path(args.config_dir).is_dir():
        refuse(CommandLineError(f"--config-dir {args.config_dir}: no such folder; give the folder that holds your "
                                "config groups (e.g. ~/my_nst/conf)"))
    report_environment_faults_in_one_line()
    check_when_hydra_starts(args)
    try:
        run_app()
    finally:  # the run's files are written and its loggers finished: the interpreter's last garbage collection
        gc.freeze()  # would take seconds over torch's objects to free memory that the exit frees anyway


def refuse(error: CommandLineError) -> NoReturn:
    """The command line's mistake as one line on stderr, exit status 2 (Hydra's own error after it with
    HYDRA_FULL_ERROR=1)."""
    print(f"error: {error}", file=sys.stderr)
    if os.environ.get("HYDRA_FULL_ERROR") == "1" and error.__cause__ is not None:
        traceback.print_exception(error.__cause__)
    sys.exit(2)


def check_when_hydra_starts(args: argparse.Namespace) -> None:
    """Run `check` as soon as Hydra has built its config loader, before it composes or writes anything: the
    loader searches what Hydra will search (--config-path, --config-dir and the primary config of
    --config-name included), so every way into a run gets the same checks."""
    creating = vars(Hydra)["create_main_hydra2"]

    def create_and_check(cls: type[Hydra], task_name: str, config_search_path: ConfigSearchPath) -> Hydra:
        Hydra.create_main_hydra2 = creating  # the command line's Hydra only, not a later one of the compose API
        hydra = creating.__get__(None, cls)(task_name=task_name, config_search_path=config_search_path)
        try:
            check(args)
        except CommandLineError as error:
            refuse(error)
        return hydra

    Hydra.create_main_hydra2 = classmethod(create_and_check)


def check(args: argparse.Namespace) -> None:
    """Raise `CommandLineError` if Hydra would refuse `args` (Hydra's parsed command line), composing with the
    config loader of the Hydra that is set up (`GlobalHydra`); commands that compose nothing (--help, --info,
    ...) are left to Hydra."""
    own_commands = args.help or args.hydra_help or args.info or args.shell_completion or args.experimental_rerun
    if (not args.overrides and args.config_name is None) or own_commands or (args.cfg and args.multirun):
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Hydra repeats its warnings when it composes for real
        Check(GlobalHydra.instance().config_loader(), args.config_name or CONFIG_NAME).run(
            args.overrides, multirun=args.multirun, show_cfg=args.cfg is not None)


def report_environment_faults_in_one_line() -> None:
    """Hydra writes the run folder's .hydra/ and log file before the app starts, and reports a failure there
    with a traceback. A full disk or a read-only folder there is one line instead, exit status 1, with what
    Hydra had written removed (an empty .hydra/config.yaml)."""
    reporting, saving = hydra_utils.run_and_report, hydra_core_utils._save_config

    def save_config(cfg: Any, filename: str, output_dir: Path) -> None:
        try:
            saving(cfg, filename, output_dir)
        except OSError:
            with contextlib.suppress(OSError):
                remove_unfinished_run_dir(Path(output_dir).parent)
            raise

    def run_and_report(func: Callable[[], Any]) -> Any:
        def one_line_faults() -> Any:
            try:
                return func()
            except OSError as error:
                fault = environment_fault(error)
                if fault is None:
                    raise
                print(f"error: {fault}", file=sys.stderr)
                sys.exit(1)

        return reporting(one_line_faults)

    hydra_utils.run_and_report, hydra_core_utils._save_config = run_and_report, save_config


def resumed_run_options(args: argparse.Namespace) -> list[str]:
    """For `resume=<run dir>`: the run's own config group options (`task=gan`, `optimizer=adam`, ...) that the
    command line does not set, from the run's config.yaml, to go before its overrides. Hydra then composes,
    and `check` checks, the resumed run's own config: a GAN run's keys are keys, style transfer's are not."""
    overrides = dict(o.split("=", 1) for o in args.overrides if "=" in o)
    run_dir = overrides.get("resume")
    if args.multirun or not run_dir or not (Path(run_dir) / "config.yaml").is_file():
        return []
    try:
        saved = yaml.safe_load((Path(run_dir) / "config.yaml").read_text())
        choices = {"task": saved.get("task"), **(saved.get("choices") or {})}
    except (yaml.YAMLError, AttributeError, OSError):
        return []  # the app reports an unreadable config.yaml
    given = {key.lstrip("+~") for key in overrides}
    return [f"{group}={option}" for group, option in choices.items()
            if group not in given and group not in SWEEP_GROUPS and "/" not in group and option is not None]


def list_group_options_without_copies() -> None:
    """Make Hydra's --help and --hydra-help quick. They list every config group's options through
    `ConfigLoaderImpl.get_group_options`, which deep-copies the whole config repository on each of its
    120-odd calls, most of the help's time. The copy exists so that a primary config's
    hydra.searchpath can re-point its sources; called without a config name or overrides, as the help
    calls it, nothing is re-pointed, so the repository itself gives the same answer."""
    copying = ConfigLoaderImpl.get_group_options

    def get_group_options(self: ConfigLoaderImpl, group_name: str,
                          results_filter: ObjectType | None = ObjectType.CONFIG,
                          config_name: str | None = None, overrides: list[str] | None = None) -> list[str]:
        if config_name is None and not overrides:  # shared parts (conf/gan/_common.yaml) are not options
            return [name for name in self.repository.get_group_options(group_name, results_filter)
                    if not name.startswith("_")]
        return copying(self, group_name, results_filter, config_name, overrides)

    ConfigLoaderImpl.get_group_options = get_group_options


class Check:
    """Compose the config as Hydra will and word what fails (`run`)."""

    def __init__(self, loader: ConfigLoader, config_name: str):
        self.loader, self.config_name = loader, config_name

    def run(self, overrides: list[str], multirun: bool, show_cfg: bool) -> None:
        """The modes as Hydra picks them: --cfg composes one job; otherwise the config's own
        hydra.mode (an Optuna search sets MULTIRUN) unless -m is given."""
        try:
            parsed = OverridesParser.create(config_loader=self.loader).parse_overrides(overrides)
        except OverrideParseException as error:
            raise CommandLineError(parse_problem(error)) from error
        if not (multirun or show_cfg):
            try:
                mode = self.load(overrides, RunMode.MULTIRUN, validate_sweeps=False).hydra.mode
                multirun = mode == RunMode.MULTIRUN
            except (HydraException, OmegaConfBaseException):
                pass  # Hydra then runs one job, which reports the error: compose that one below
        if not multirun:
            self.compose(overrides, RunMode.RUN, multirun=False)
            return
        if self.compose(overrides, RunMode.MULTIRUN, multirun=True) is None:
            return
        first, others = sweep_jobs(parsed)
        cfg = self.compose(first, RunMode.RUN, multirun=True)
        for group, value, job in others:
            if cfg is not None and group in cfg.hydra.runtime.choices:  # a group's options decide which keys exist
                self.compose(job, RunMode.RUN, multirun=True, job_value=value)

    def load(self, overrides: list[str], mode: RunMode, validate_sweeps: bool = True) -> DictConfig:
        return self.loader.load_configuration(self.config_name, list(overrides), run_mode=mode,
                                              validate_sweep_overrides=validate_sweeps)

    def compose(self, overrides: list[str], mode: RunMode, multirun: bool, job_value: str = "") -> DictConfig | None:
        """The config, or `CommandLineError` when the command line makes it fail, or None when it
        fails on its own (not the user's mistake: Hydra reports it). `job_value`: the swept value
        that makes this job of a multirun."""
        try:
            return self.load(overrides, mode)
        except (HydraException, OmegaConfBaseException) as error:
            parsed = OverridesParser.create(config_loader=self.loader).parse_overrides(overrides)
            problem = self.describe(error, parsed, multirun)
            if problem is None:
                return None
            if job_value and not problem.startswith(job_value):
                problem = f"in the job with {job_value}: {problem}"
            raise CommandLineError(problem) from error

    def describe(self, error: Exception, parsed: list[Override], multirun: bool) -> str | None:
        """One line for `error`, or None when the config fails without the command line's help."""
        cause = error.__cause__
        missing = getattr(error, "missing_cfg_file", None) or ""
        group, _, name = missing.rpartition("/")
        if isinstance(error, MissingConfigException) and missing == self.config_name:
            return self.not_an_option("", self.config_name)
        if isinstance(error, MissingConfigException) and not missing:  # the primary config's folder
            folder = re.search(r"'(.*)'", str(error))
            return (f"--config-path: no config folder {folder.group(1) if folder else ''}; give the folder that "
                    f"holds the primary config, absolute or relative to {Path(CONFIG_DIR).parent / 'nst_research'}")
        if isinstance(error, MissingConfigException) and any(o.key_or_group == group for o in parsed):
            return self.not_an_option(group, name)
        if isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and cause.full_key:
            return self.unknown_key(cause.full_key, parsed, multirun)
        if isinstance(cause, OmegaConfBaseException) and cause.full_key:
            culprit = next((o for o in parsed if o.key_or_group == cause.full_key), None)
            given = culprit.input_line if culprit else cause.full_key
            where = HYDRA_HELP if cause.full_key.startswith("hydra.") else HELP
            return f"{given}: {first_line(cause.msg)}; give a value of the key's type ({where})"
        override = culprit_of(str(error), parsed)
        if override is not None and override.is_sweep_override():
            if not multirun:
                return (f"{override.input_line} gives several values; add -m to run one job per value, or write "
                        f"{override.key_or_group}=[...] for a list or '{override.key_or_group}=\"...\"' for a string")
            if override.is_hydra_override():
                return f"{override.input_line}: Hydra's own settings cannot be swept; give one value"
        if override is not None and override.is_add():
            plain = override.input_line[1:]
            return (f"{override.input_line} adds {override.key_or_group}, which already exists; "
                    f"write {plain} to change it")
        if override is not None and override.is_delete():
            return "cannot delete: " + self.unknown_key(override.key_or_group, parsed, multirun)
        if override is not None and override.package is None and self.loader.get_group_options(override.key_or_group):
            return self.group_not_in_use(override)
        try:
            self.load([], RunMode.RUN)
        except (HydraException, OmegaConfBaseException):
            return None
        return f"{first_line(str(error)).rstrip('.')}; {HELP}"

    def unknown_key(self, key: str, parsed: list[Override], multirun: bool) -> str:
        """`key` is not in the config: suggest the closest dotted key or config group. In a multirun
        the key may exist only with a swept group's later option: Hydra composes the sweep's base
        config with each swept group at its default."""
        cfg = self.config_without(key, parsed)
        candidates = []
        if cfg is not None:
            tree = OmegaConf.to_container(cfg, resolve=False)
            groups = list(tree["hydra"]["runtime"]["choices"])
            if not key.startswith("hydra"):
                del tree["hydra"]
                groups = [group for group in groups if not group.startswith("hydra/")]
            candidates = [c for c in (*dotted_keys(tree), *groups) if multirun or c != key]
        where = HYDRA_HELP if key.startswith("hydra") else HELP
        if multirun and key in candidates:
            given = next((o.input_line.lstrip("+") for o in parsed if o.key_or_group == key), f"{key}=...")
            return (f"unknown key {key} before the sweep's groups apply; "
                    f"++{given} sets it where it exists, adds it elsewhere")
        suggestion = closest(key, candidates)
        if suggestion is None:
            return f"unknown key {key}; {where}"
        return f"unknown key {key}; did you mean {suggestion}? ({where})"

    def config_without(self, key: str, parsed: list[Override]) -> DictConfig | None:
        """The config of the other overrides (swept keys at their first value), else the plain config."""
        others = [o for o in parsed if o.key_or_group != key]
        first = [f"{o.get_key_element()}={next(sweep_values(o), '')}" if o.is_sweep_override() else o.input_line
                 for o in others]
        for overrides in (first, []):
            try:
                return self.load(overrides, RunMode.RUN)
            except (HydraException, OmegaConfBaseException):
                continue
        return None

    def not_an_option(self, group: str, name: str) -> str:
        """`name` is no option of `group`; the group "" holds the primary configs (--config-name)."""
        options = [option for option in self.loader.get_group_options(group) if not option.startswith("_")]
        suggestion = closest(name, options)
        hint = f" (did you mean {suggestion}?)" if suggestion else ""
        given = f"{group}={name}" if group else f"--config-name {name}"
        return f"{given} is not an option; choose one of {', '.join(options)}{hint}"

    def group_not_in_use(self, override: Override) -> str:
        """A group override for a group this config does not choose (gan=fc without task=gan)."""
        group, value = override.key_or_group, override.input_line.partition("=")[2]
        if "/" in group and not options_choosing(group):  # chosen by name inside its parent (gan.loss=hinge)
            return f"{group}={value} is chosen by name: use {group.replace('/', '.')}={value}"
        owners = " or ".join(options_choosing(group)) or f"+{group}={value} (which adds the group)"
        options = [option for option in self.loader.get_group_options(group) if not option.startswith("_")]
        if value in options:
            return f"{group}={value} applies only with {owners}; use {owners}"
        suggestion = closest(value, options)
        hint = f" (did you mean {suggestion}?)" if suggestion else ""
        return (f"{group}={value} applies only with {owners} and is not an option; "
                f"use {owners} and one of {', '.join(options)}{hint}")


def sweep_jobs(parsed: list[Override]) -> tuple[list[str], list[tuple[str, str, list[str]]]]:
    """The first job of a sweep (each swept key at its first value) and, for every other value of
    each swept key, (key, key=value, the first job with that value instead)."""
    lines = [[f"{o.get_key_element()}={v}" for v in sweep_values(o)] if o.is_sweep_override() else [o.input_line]
             for o in parsed]
    first = [line[0] for line in lines if line]
    others = [(override.key_or_group, value, [value if other is line else other[0] for other in lines if other])
              for override, line in zip(parsed, lines, strict=True) for value in line[1:]]
    return first, others


def sweep_values(override: Override) -> Iterator[str]:
    """The values of a sweep as override strings; an interval (Optuna's) by its start."""
    if override.is_interval_sweep():
        yield str(override.value().start)
    else:
        yield from override.sweep_string_iterator()


def parse_problem(error: OverrideParseException) -> str:
    """Hydra's parse message without its header line and link: what the parser expected."""
    detail = [line for line in error.message.splitlines() if not line.startswith(("Error parsing", "See "))]
    if "=" not in error.override:
        return f"cannot read '{error.override}': an override is key=value, e.g. style_weight=1e5"
    return (f"cannot read '{error.override}': {'; '.join(detail)}; quote values with special characters "
            f"('key=\"a,b\"'), see https://hydra.cc/docs/advanced/override_grammar/basic/")


def culprit_of(message: str, parsed: list[Override]) -> Override | None:
    """The override Hydra's `message` is about: named whole, else by its key."""
    for override in parsed:
        if override.input_line and override.input_line in message:
            return override
    for override in parsed:
        if re.search(rf"(?<![\w./]){re.escape(override.key_or_group)}(?![\w/]|\.\w)", message):
            return override
    return None


def dotted_keys(node: dict, prefix: str = "") -> Iterator[str]:
    """Every key of a config container as a dotted path: optimizer, optimizer.lr, ..."""
    for key, value in node.items():
        yield f"{prefix}{key}"
        if isinstance(value, dict):
            yield from dotted_keys(value, f"{prefix}{key}.")


def closest(word: str, candidates: list[str]) -> str | None:
    """The candidate most like `word` (difflib), else the one whose last dotted part is most like
    word's last part (lr -> optimizer.lr)."""
    match = difflib.get_close_matches(word, candidates, n=1)
    if match:
        return match[0]
    leaves: dict[str, str] = {}
    for candidate in sorted(candidates, key=len):
        leaves.setdefault(candidate.rpartition(".")[2], candidate)
    match = difflib.get_close_matches(word.rpartition(".")[2], list(leaves), n=1)
    return leaves[match[0]] if match else None


def options_choosing(group: str) -> list[str]:
    """The group options in conf/ whose defaults list chooses `group` (task=gan for gan, data)."""
    owners = []
    for path in sorted(Path(CONFIG_DIR).glob("*/*.yaml")):
        defaults = OmegaConf.load(path).get("defaults") or []
        for entry in defaults:
            name = next(iter(entry), "") if OmegaConf.is_dict(entry) else ""
            if name.startswith("override "):
                continue
            name = name.split("@")[0].removeprefix("optional ")
            owner = f"{path.parent.name}={path.stem}"
            chosen = (name[1:] if name.startswith("/") else f"{path.parent.name}/{name}") == group
            if chosen and not path.stem.startswith("_") and owner not in owners:
                owners.append(owner)
    return owners


def first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0]
