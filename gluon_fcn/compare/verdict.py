"""The verdict of a matched comparison: do the two frameworks part further
than rounding carries one of them?

The controls of `compare` are Gluon again, from its weights times (1 +
eps noise), eps the machine epsilon of the run's precision: about one
rounding step a weight, which training from scratch amplifies step by
step. At each step the gap |Gluon - PyTorch| in the loss is set against
the controls' spread, the largest |Gluon - control|: within it, PyTorch
is as close to Gluon as Gluon is to itself after a rounding of its
weights. Two libraries round the same net a little differently, so a gap
a few times the spread is still rounding; more than ORDER times it at
some step, and the recipes differ (in float64, where the matched recipes
agree to rounding; in float32 it may also be the libraries' rounding, and
float64 tells). At step 1 the nets hold the same
weights and see the same batch, so a gap there is the forward pass; a
gap that first shows at step s > 1 comes from the update of step s - 1.
"""
import numpy as onp

# a gap within this many times the controls' spread is rounding. The
# controls perturb the weights once; two libraries round differently at
# every operation of every step, so their gap runs some times the spread
# (up to 10x measured, README "Comparing"), while the smallest recipe
# difference the comparison exists for, a hyperparameter held in float32
# in a float64 run, stands out by about 1e7x. 100 leaves a factor of 10
# on the side of rounding and 1e5 on the side of recipes.
ORDER = 100


def step_gaps(result):
    """Per step of a matched `compare` result: {'step', 'gap' (|Gluon -
    PyTorch| loss), 'spread' (the largest |Gluon - control| loss, at
    least one rounding step of the loss), 'ratio' (gap / spread),
    'within' (gap <= spread)}."""
    rows = []
    for r in result['steps']:
        loss = r['gluon_loss']
        gap = abs(loss - r['torch_loss'])
        spread = max([abs(loss - c) for c in r['control_loss']] +
                     [float(onp.spacing(onp.dtype(result['dtype']).type(
                         abs(loss))))])
        rows.append({'step': r['step'], 'gap': gap, 'spread': spread,
                     'ratio': gap / spread, 'within': gap <= spread})
    return rows


def where_it_starts(step):
    """Which computation first separates two runs that part at `step`."""
    if step == 1:
        return 'the forward pass of the same weights (step 1)'
    return f'the update of step {step - 1}'


def verdict(result):
    """What a matched comparison shows, as numbers and in words.

    Returns {'gap', 'gap_step' (the largest loss gap and its step),
    'spread' (the controls' largest spread), 'ratio', 'ratio_step' (the
    largest gap / spread of a step, and that step), 'within' and
    'within_order' (how many steps have a gap within the spread, within
    ORDER times it), 'steps', 'beyond' (the first step beyond ORDER
    times, or None), 'conclusion' (a few words, what it means) and
    'evidence' (sentences with the numbers behind it)}.
    """
    rows = step_gaps(result)
    largest = max(rows, key=lambda r: r['gap'])
    worst = max(rows, key=lambda r: r['ratio'])
    beyond = [r['step'] for r in rows if r['ratio'] > ORDER]
    found = {'gap': largest['gap'], 'gap_step': largest['step'],
             'spread': max(r['spread'] for r in rows),
             'ratio': worst['ratio'], 'ratio_step': worst['step'],
             'within': sum(r['within'] for r in rows),
             'within_order': sum(r['ratio'] <= ORDER for r in rows),
             'steps': len(rows), 'beyond': beyond[0] if beyond else None}
    found['conclusion'] = conclusion(found, result['dtype'])
    found['evidence'] = evidence(found, result['dtype'])
    return found


def conclusion(found, dtype):
    """What the comparison shows, in a few words. Beyond ORDER in float64
    the recipes differ; in float32 two libraries' arithmetic may also
    round further apart than eps-sized noise in the weights."""
    if found['beyond'] is None:
        return 'the two frameworks train alike, to rounding'
    if dtype == 'float64':
        return 'the matched recipes differ'
    return f'the two frameworks part beyond {dtype} rounding'


def evidence(found, dtype):
    """The numbers behind the conclusion: a sentence on the worst step
    against the controls, one on the gaps and spreads."""
    if found['beyond'] is not None:
        why = (f'PyTorch parts from Gluon {found["ratio"]:.3g}x farther '
               f'than the controls (step {found["ratio_step"]}), beyond '
               f'{ORDER}x first in {where_it_starts(found["beyond"])}.')
        if dtype != 'float64':
            why += (' A recipe differs, or the two libraries\' '
                    f'{dtype} arithmetic rounds further apart than '
                    'eps-sized noise in the weights: --dtype float64 '
                    'tells which.')
    elif found['within'] == found['steps']:
        why = ('PyTorch stays within the controls\' spread at every '
               'step.')
    else:
        why = (f'PyTorch parts from Gluon at most {found["ratio"]:.1f}x '
               f'as far as the controls (step {found["ratio_step"]}), '
               f'within {ORDER}x at every step: training from scratch '
               'amplifies rounding.')
    numbers = (f'Largest loss gap |Gluon - PyTorch| {found["gap"]:.1e} '
               f'(step {found["gap_step"]}), the controls\' largest '
               f'spread {found["spread"]:.1e}; within the spread at '
               f'{found["within"]} of {found["steps"]} steps, within '
               f'{ORDER}x of it at {found["within_order"]}.')
    return [why, numbers]
