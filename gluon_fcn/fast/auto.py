"""`precision='auto'`: the fastest of fp32, bf16 and int8 on this CPU
among those whose predictions keep the class of `AGREEMENT` of the
calibration images' pixels against float32, all measured on those
images.

Each precision the CPU has units for (`cpu.precision_units`) is built
(`inference_net`) and run on the calibration images: its share of pixels
in their float32 class (`classes_kept`) and its rate, the nets taking
turns over `ROUNDS` passes so that a machine's busy spell slows them
alike. The `Choice` says what was measured; `gluon-fcn` keeps it beside
a run, per CPU model, so that it is measured once.
"""
import dataclasses
import statistics
import time

from ..errors import FCNError
from .cpu import cpu_path, precision_units
from .native import cpu_model
from .precision import (PRECISIONS, batches_like, calibration_array,
                        classes_kept, inference_net)

AGREEMENT = 0.99
TIMED_IMAGES = 8  # of the calibration images, in each round
ROUNDS = 2


@dataclasses.dataclass
class Choice:
    """What `auto` measured and chose: `rates` (images a second) and
    `kept` (the share of the calibration images' pixels in their float32
    class) of each precision it ran, the `units` each ran on and the
    `cpu`."""
    precision: str
    rates: dict
    kept: dict
    units: dict
    cpu: str

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls)})

    def fastest(self, among=None):
        """The fastest precision (of `among`, default all measured) that
        keeps `AGREEMENT` of the pixels; fp32, the reference, always
        does."""
        return max((p for p in among or self.rates if p == 'fp32' or
                    self.kept[p] >= AGREEMENT), key=self.rates.get)

    def describe(self):
        """One line: the choice, its rate and agreement, the others'."""
        def figures(p):
            kept = '' if p == 'fp32' else f', {self.kept[p]:.1%} kept'
            return f'{p} {self.rates[p]:.1f} img/s{kept}'
        others = '; '.join(figures(p) for p in self.rates
                           if p != self.precision)
        p = self.precision
        return (f'auto chose {p}: {self.rates[p]:.1f} img/s, '
                f'{self.kept[p]:.1%} of the calibration pixels in their '
                f'fp32 class (>= {AGREEMENT:.0%} needed; {others}) on '
                f'{cpu_path(p)}')


def units_here():
    """{precision: units} of the precisions this CPU runs."""
    units = {p: precision_units(p) for p in PRECISIONS}
    return {p: u for p, u in units.items() if u}


def images_per_second(nets, images, X, rounds=ROUNDS):
    """{name: images a second} of each of `nets` on `images` in batches
    like `X`: the median time of a batch after a warm-up one, the nets
    taking turns over `rounds` passes."""
    batches = [x for x, _ in batches_like(images, X)]
    times = {name: [] for name in nets}
    for net in nets.values():
        net(batches[0]).wait_to_read()
    for _ in range(rounds):
        for name, net in nets.items():
            for x in batches:
                tic = time.perf_counter()
                net(x).wait_to_read()
                times[name].append(time.perf_counter() - tic)
    return {name: X.shape[0] / statistics.median(t)
            for name, t in times.items()}


def choose_precision(net, X, calib_data, int8_cache=None, known=None):
    """`net` (from `build_fcn`) as an `InferenceFCN` for batches like `X`
    in the fastest precision that keeps `AGREEMENT` of the pixels of
    `calib_data` (images, as `inference_net` takes them) in their float32
    class; its `choice` attribute holds the `Choice`. `known`, a `Choice`
    made before on this CPU, is taken instead of measuring."""
    if known is not None:
        chosen = inference_net(net, X, known.precision, calib_data,
                               int8_cache)
        chosen.choice = known
        return chosen
    if calib_data is None:
        raise FCNError("precision 'auto' needs calibration images "
                       '(calib_data)')
    images = calibration_array(calib_data)
    units = units_here()
    nets = {p: inference_net(net, X, p, images, int8_cache)
            for p in units}
    kept = {p: 1.0 if p == 'fp32' else
            classes_kept(nets[p], nets['fp32'], images, X) for p in nets}
    rates = images_per_second(nets, images[:TIMED_IMAGES], X)
    choice = Choice('fp32', rates, kept, units, cpu_model())
    choice.precision = choice.fastest()
    chosen = nets[choice.precision]
    chosen.choice = choice
    return chosen
