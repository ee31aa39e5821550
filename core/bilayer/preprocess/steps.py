"""One preprocessing step on one or many tomograms: the options of every step, checked in one place,
and the file-level run the command line, the RELION job and the Scipion protocol share.

A step is one of MemBrain-seg's ``tomo_preprocessing`` tools: ``rescale`` (Fourier cropping or
padding to another voxel size), ``match-spectrum`` (amplitude spectrum matched to a TSV) and
``deconvolve`` (Wiener-like filter). :class:`PreprocessOptions` holds the options of all three,
flat (as settings files and the adapters' parameters name them), and :func:`preprocess_options`
is their one merge point. :func:`plan_preprocessing` checks every input and output before any
work (a problem anywhere stops the run, nothing written) and :func:`preprocess_file` runs a step.
"""

from __future__ import annotations

import dataclasses
import enum
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bilayer import checks
from bilayer.errors import BilayerError, ConfigError, PreflightError
from bilayer.io import PLAUSIBLE_VOXEL_SIZE, check_output_path, output_name, read_tomogram
from bilayer.preprocess.deconvolve import DeconvolutionOptions
from bilayer.preprocess.spectrum import SpectrumMatching
from bilayer.settings import merged_config

__all__ = ["PreprocessOptions", "PreprocessPlan", "Step", "default_destination", "output_kind", "plan_preprocessing",
           "preprocess_file", "preprocess_options", "preprocess_tomogram"]


class Step(str, enum.Enum):
    """A preprocessing step (its command's name)."""

    RESCALE = "rescale"
    MATCH_SPECTRUM = "match-spectrum"
    DECONVOLVE = "deconvolve"


#: The output kind (:mod:`bilayer.io.naming`) each step writes.
_OUTPUT_KINDS = {Step.RESCALE: "rescaled", Step.MATCH_SPECTRUM: "matched", Step.DECONVOLVE: "deconvolved"}


def output_kind(step: Step | str) -> str:
    """The output kind of ``step``: its file is ``output_name(tomogram, output_kind(step))``."""
    return _OUTPUT_KINDS[checks.choice("step", step, Step)]


@dataclass(frozen=True)
class PreprocessOptions:
    """Every option of a preprocessing run; only those of ``step`` are used.

    Attributes:
        step: rescale, match-spectrum or deconvolve.
        voxel_size: Å of every input, replacing the headers'; ``None``: the headers' (a header outside
            the sizes tomograms have is refused).
        target_voxel_size: rescale: the voxel size to resample to (Å; MemBrain-seg's default, its models' size).
        smooth_edge: rescale: MemBrain-seg's smooth ellipsoid edge mask on the result.
        target_spectrum: match-spectrum: the spectrum TSV to match.
        matching: match-spectrum: :class:`~bilayer.preprocess.spectrum.SpectrumMatching`.
        deconvolution: deconvolve: :class:`~bilayer.preprocess.deconvolve.DeconvolutionOptions`.
    """

    step: Step
    voxel_size: float | None = None
    target_voxel_size: float = 10.0
    smooth_edge: bool = True
    target_spectrum: str | None = None
    matching: SpectrumMatching = field(default_factory=SpectrumMatching)
    deconvolution: DeconvolutionOptions = field(default_factory=DeconvolutionOptions)

    def __post_init__(self) -> None:
        object.__setattr__(self, "step", checks.choice("step", self.step, Step))
        if self.voxel_size is not None:
            object.__setattr__(self, "voxel_size", checks.number("voxel_size", self.voxel_size, 0.0, open_low=True))
        low, high = PLAUSIBLE_VOXEL_SIZE
        object.__setattr__(self, "target_voxel_size", checks.number("target_voxel_size", self.target_voxel_size,
                                                                    low, high))
        object.__setattr__(self, "smooth_edge", checks.flag("smooth_edge", self.smooth_edge))
        if self.target_spectrum is not None:
            if not isinstance(self.target_spectrum, (str, os.PathLike)) or not str(self.target_spectrum):
                raise ConfigError(f"target_spectrum={self.target_spectrum!r} must be the path of a spectrum TSV")
            object.__setattr__(self, "target_spectrum", str(self.target_spectrum))
        if self.step is Step.MATCH_SPECTRUM and self.target_spectrum is None:
            raise ConfigError("match-spectrum needs the spectrum to match (target_spectrum: a TSV from bilayer "
                              "preprocess spectrum or MemBrain-seg's extract_spectrum)")
        if not isinstance(self.matching, SpectrumMatching) or not isinstance(self.deconvolution, DeconvolutionOptions):
            raise ConfigError("matching and deconvolution must be SpectrumMatching and DeconvolutionOptions; use "
                              "PreprocessOptions.from_dict for plain settings")

    @staticmethod
    def names() -> tuple[str, ...]:
        """Every option's flat name: the keys of settings files and of :meth:`to_dict`."""
        own = tuple(f.name for f in dataclasses.fields(PreprocessOptions) if f.name not in _NESTED)
        return (*own, *(f.name for cls in _NESTED.values() for f in dataclasses.fields(cls)))

    def to_dict(self) -> dict[str, Any]:
        """All options, flat and JSON-ready."""
        own = {name: getattr(self, name) for name in self.names() if name in _OWN}
        return {**own, "step": self.step.value, **self.matching.to_dict(), **self.deconvolution.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PreprocessOptions:
        """Options from a flat mapping (a settings file, :meth:`to_dict`); missing keys take defaults.

        Raises:
            ConfigError: no step, an unknown key (the message lists the known ones) or a bad value.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"preprocessing settings must be a mapping, not {type(data).__name__}")
        unknown = sorted(str(k) for k in data if k not in cls.names())
        if unknown:
            raise ConfigError(f"unknown preprocessing setting(s) {', '.join(map(repr, unknown))}; known ones: "
                              f"{', '.join(cls.names())}")
        if data.get("step") is None:
            raise ConfigError(f"choose the preprocessing step: one of {checks.choices_text(Step)}")
        nested = {name: sub.from_dict({f.name: data[f.name] for f in dataclasses.fields(sub) if f.name in data})
                  for name, sub in _NESTED.items()}
        return cls(**{k: v for k, v in data.items() if k in _OWN}, **nested)

    def output_voxel_size(self, input_voxel_size: float) -> float:
        """The voxel size (Å) of the step's output for an input at ``input_voxel_size``."""
        return self.target_voxel_size if self.step is Step.RESCALE else float(input_voxel_size)


_NESTED = {"matching": SpectrumMatching, "deconvolution": DeconvolutionOptions}
_OWN = tuple(f.name for f in dataclasses.fields(PreprocessOptions) if f.name not in _NESTED)


def preprocess_options(settings_file: str | os.PathLike | None = None, **values: Any) -> PreprocessOptions:
    """The one merge point of preprocessing options: defaults ← ``settings_file`` (JSON or YAML, flat
    keys as :meth:`PreprocessOptions.names`) ← ``values`` (``None`` values are not given).

    Raises:
        ConfigError: an unreadable settings file, no step, an unknown option or a bad value.
    """
    return merged_config(PreprocessOptions, settings_file, what="preprocessing settings", **values)


@dataclass(frozen=True)
class PreprocessPlan:
    """One checked input and the file its step writes."""

    source: Path
    destination: Path
    voxel_size: float
    output_voxel_size: float


def plan_preprocessing(sources: Sequence[str | os.PathLike], destinations: Sequence[str | os.PathLike],
                       options: PreprocessOptions, *, voxel_sizes: Sequence[float | None] | None = None,
                       overwrite: bool = False) -> list[PreprocessPlan]:
    """Check every input and output before any work; one plan per input, in order.

    Args:
        sources: the tomograms.
        destinations: the file each one's result goes to.
        options: the step and its options (``options.voxel_size`` replaces every header's).
        voxel_sizes: per input, Å replacing its header's (e.g. from a STAR file); ``None`` entries
            take ``options.voxel_size`` or the header.
        overwrite: allow replacing existing outputs (never an input).

    Raises:
        PreflightError: every problem found, one line each naming the file and the fix.
    """
    sources = [Path(s) for s in sources]
    destinations = [Path(d) for d in destinations]
    if len(sources) != len(destinations):
        raise ConfigError(f"{len(sources)} inputs but {len(destinations)} outputs")
    given = list(voxel_sizes) if voxel_sizes is not None else [None] * len(sources)
    problems: list[str] = []
    if options.step is Step.MATCH_SPECTRUM:
        problems += _problems(_read_target, options)
    protect = [*sources, *([Path(options.target_spectrum)] if options.target_spectrum else [])]
    plans: list[PreprocessPlan] = []
    seen: dict[Path, Path] = {}
    for source, destination, size in zip(sources, destinations, given):
        size = size if size is not None else options.voxel_size
        key = destination.resolve()
        if key in seen:
            problems.append(f"{source} and {seen[key]} would both be written to {destination}; give the inputs "
                            "different names or output folders")
            continue
        seen[key] = source
        found = _problems(check_output_path, destination, overwrite=overwrite, protect=protect)
        plan = None
        try:
            volume = read_tomogram(source, voxel_size=size)
            if options.step is Step.RESCALE:
                from bilayer.preprocess.rescale import check_rescale

                check_rescale(volume.shape, volume.isotropic_voxel_size, options.target_voxel_size,
                              smooth_edge=options.smooth_edge, what=source)
            plan = PreprocessPlan(source, destination, volume.isotropic_voxel_size,
                                  options.output_voxel_size(volume.isotropic_voxel_size))
        except BilayerError as e:
            found.append(str(e))
        problems += found
        if plan is not None and not found:
            plans.append(plan)
    if problems:
        raise PreflightError(problems)
    return plans


def preprocess_file(plan: PreprocessPlan, options: PreprocessOptions, *, overwrite: bool = False,
                    temp_dir: str | os.PathLike | None = None) -> Path:
    """Run ``options.step`` on one planned tomogram; the output appears complete or not at all.
    ``temp_dir``: where a rescale keeps its temporary spectrum (default: the output's folder).

    Returns:
        The file written.
    """
    step = options.step
    if step is Step.RESCALE:
        from bilayer.preprocess.rescale import rescale_file

        return rescale_file(plan.source, plan.destination, options.target_voxel_size, input_voxel_size=plan.voxel_size,
                            smooth_edge=options.smooth_edge, overwrite=overwrite, temp_dir=temp_dir)
    if step is Step.MATCH_SPECTRUM:
        from bilayer.preprocess.spectrum import match_spectrum_file

        return match_spectrum_file(plan.source, str(options.target_spectrum), plan.destination,
                                   options=options.matching, voxel_size=plan.voxel_size, overwrite=overwrite)
    from bilayer.preprocess.deconvolve import deconvolve_file

    return deconvolve_file(plan.source, plan.destination, options.deconvolution, voxel_size=plan.voxel_size,
                           overwrite=overwrite)


def preprocess_tomogram(source: str | os.PathLike, destination: str | os.PathLike | None = None, *,
                        settings: str | os.PathLike | None = None, overwrite: bool = False,
                        temp_dir: str | os.PathLike | None = None, **options: Any) -> Path:
    """Run one preprocessing step on one tomogram file: the Python door, and the command line's.

    Options merge as everywhere in Bilayer (:func:`preprocess_options`): the defaults, then
    ``settings`` (a JSON or YAML file), then ``options`` by name (``step="rescale",
    target_voxel_size=10``). ``destination``: a file, or a folder for the step's name
    (``t.mrc`` → ``t_rescaled.mrc``, ``t_matched.mrc``, ``t_deconv.mrc``); by default beside ``source``.

    Returns:
        The file written.

    Raises:
        BilayerError: a bad option, input or output, before any work (one line each).
    """
    chosen = preprocess_options(settings, **options)
    target = Path(destination) if destination is not None else Path(source).parent
    if target.is_dir():
        target = default_destination(source, target, chosen.step)
    plan, = plan_preprocessing([source], [target], chosen, overwrite=overwrite)
    return preprocess_file(plan, chosen, overwrite=overwrite, temp_dir=temp_dir)


def default_destination(source: str | os.PathLike, out_dir: str | os.PathLike, step: Step | str) -> Path:
    """Where ``source``'s result of ``step`` goes in ``out_dir`` (its name from :mod:`bilayer.io.naming`)."""
    return Path(out_dir) / output_name(source, output_kind(step))


def _read_target(options: PreprocessOptions) -> None:
    from bilayer.preprocess.spectrum import read_spectrum

    read_spectrum(str(options.target_spectrum))


def _problems(check: Any, *args: Any, **kwargs: Any) -> list[str]:
    """``[]`` when ``check(*args, **kwargs)`` passes, else its error's one line."""
    try:
        check(*args, **kwargs)
    except BilayerError as e:
        return [str(e)]
    return []
