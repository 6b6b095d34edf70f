"""`gluon-fcn compare`: both chapters side by side, the verdict against
the controls, and the report a student reads."""
import contextlib
import io
import json
import os
import re

import numpy as onp
import pytest

from cli_output import DIFFERENCES
from gluon_fcn.app import figures
from gluon_fcn.app.cli import main
from gluon_fcn.app.comparing import write_comparison
from gluon_fcn.compare.verdict import ORDER, verdict

pytest.importorskip('torch')
R = pytest.importorskip('gluon_fcn.compare.run')


def run_compare(synth_voc, out, settings, *extra):
    """compare on 64x96 crops, 3 steps of 4 examples: compare.json."""
    assert main(['compare', '--settings', settings, '--data', synth_voc,
                 '--steps', '3', '--batch-size', '4', '--crop', '64,96',
                 '--out', str(out), *extra]) == 0
    assert os.path.getsize(os.path.join(out, 'compare.png')) > 0
    with open(os.path.join(out, 'compare.json')) as f:
        return json.load(f)


def printed(synth_voc, out, settings):
    """run_compare's result and what it printed (in this process)."""
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        result = run_compare(synth_voc, out, settings)
    return result, stdout.getvalue()


@pytest.fixture(scope='module')
def matched(synth_voc, tmp_path_factory):
    return printed(synth_voc, tmp_path_factory.mktemp('matched'),
                   'matched')


@pytest.fixture(scope='module')
def textbook(synth_voc, tmp_path_factory):
    return printed(synth_voc, tmp_path_factory.mktemp('textbook'),
                   'textbook')


def expected_verdict(result):
    """What the steps of a matched result show, counted here: the loss gap
    |Gluon - PyTorch| against the largest |Gluon - control| (or one
    rounding step of the loss) at each step."""
    gaps, spreads = [], []
    for r in result['steps']:
        loss = r['gluon_loss']
        gaps.append(abs(loss - r['torch_loss']))
        ulp = onp.spacing(onp.dtype(result['dtype']).type(loss))
        spreads.append(max([abs(loss - c) for c in r['control_loss']] +
                           [float(ulp)]))
    beyond = [i + 1 for i, (g, s) in enumerate(zip(gaps, spreads))
              if g > ORDER * s]
    return {'gap': max(gaps), 'spread': max(spreads),
            'within': sum(g <= s for g, s in zip(gaps, spreads)),
            'within_order': sum(g <= ORDER * s
                                for g, s in zip(gaps, spreads)),
            'steps': len(gaps), 'beyond': beyond[0] if beyond else None}


def check_verdict(result, out):
    """The verdict in compare.json and on stdout says what the gaps
    show: the conclusion first, on a short line, then the numbers."""
    expected = expected_verdict(result)
    found = result['verdict']
    assert {k: found[k] for k in expected} == pytest.approx(expected)
    lines = out.splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith('verdict'))
    first = lines[start]
    after = lines[start + 1:]
    indented = after[:next(i for i, l in enumerate(after + [''])
                           if not l.startswith('  '))]
    evidence = ' '.join(l.strip() for l in indented)
    assert evidence == ' '.join(found['evidence'])
    assert first == f'verdict ({result["dtype"]}): {found["conclusion"]}.'
    assert len(first) < 80
    assert f'within the spread at {expected["within"]} of ' \
           f'{expected["steps"]} steps' in evidence
    assert f'{expected["gap"]:.1e}' in evidence
    assert f'{expected["spread"]:.1e}' in evidence
    if expected['beyond'] is not None:
        step = expected['beyond']
        assert ('recipes differ' if result['dtype'] == 'float64'
                else 'part beyond float32 rounding') in first
        assert ('forward pass' if step == 1 else
                f'update of step {step - 1}') in evidence
    else:
        assert 'train alike, to rounding' in first
        if expected['within'] == expected['steps']:
            assert 'stays within the controls\' spread' in evidence


def test_matched_starts_together(matched):
    """float32: the first step's figures agree; later steps drift apart
    by rounding amplified by training from scratch at lr 0.1."""
    result, _ = matched
    assert [r['step'] for r in result['steps']] == [1, 2, 3]
    first = result['steps'][0]
    # the same weights and batch: float32 logits ~1e-6 apart (the
    # 'arithmetic' difference), the loss within 10x that; a pixel's class
    # flips only on a near tie, 1e-4 of the pixels at most
    assert first['torch_loss'] == pytest.approx(first['gluon_loss'],
                                                rel=1e-5)
    assert first['torch_acc'] == pytest.approx(first['gluon_acc'],
                                               abs=1e-4)
    # the controls: Gluon from weights x (1 + 1.2e-7 noise)
    assert len(first['control_loss']) == result['controls'] == 3
    assert result['perturbation'] == float(onp.finfo('float32').eps)
    for loss in first['control_loss']:
        assert loss == pytest.approx(first['gluon_loss'], rel=1e-5)
    assert {d['aspect'] for d in result['differences']} == DIFFERENCES


def test_matched_verdict_says_what_the_gaps_show(matched):
    check_verdict(*matched)


def test_compare_png_counts_steps_in_whole_numbers(matched, tmp_path,
                                                  monkeypatch):
    """compare.png's step axes tick at steps 1, 2, 3, never at 1.5."""
    drawn = []
    monkeypatch.setattr(figures, '_save',
                        lambda fig, path: drawn.append(fig))
    write_comparison(matched[0], str(tmp_path))
    fig, = drawn
    assert len(fig.axes) == 3  # loss, accuracy, distance from Gluon
    for ax in fig.axes:
        assert ax.get_xlabel() == 'step'
        low, high = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if low <= t <= high]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks


def test_matched_report_shows_what_ran(matched):
    """Under matched the report names the matched recipes (not the
    textbook's), the units, and what matched did about each difference.
    """
    result, out = matched
    ran = out.split('\n\n')[0].splitlines()
    assert ran[0].startswith('ran: matched settings, float32, 3 steps of '
                             '4 random 64x96 crops, seed 0')
    assert ran[1] == ('  MXNet Gluon: resnet18_v1, SGD lr 0.1, wd 0.001, '
                      'gradient of the batch mean')
    # PyTorch takes lr and wd as MXNet's SGD holds them: float32
    torch_ran = re.match(r'  PyTorch:     resnet18_v1, SGD lr (\S+), wd '
                         r'(\S+),', ran[2])
    for printed, value in zip(torch_ran.groups(), (0.1, 1e-3)):
        assert float(printed) != value
        assert float(printed) == pytest.approx(float(onp.float32(value)),
                                               rel=1e-9)
    assert 'resnet18_v2' not in '\n'.join(ran)
    assert 'loss: cross-entropy a pixel' in out
    aspects = [l for l in out.splitlines()
               if l and not l.startswith(' ') and l.endswith(']')]
    assert {l.split(':')[0] for l in aspects} == DIFFERENCES
    assert all(any(f'[{word}' in l for word in
                   ('neutralised', 'remains', 'the same'))
               for l in aspects)
    # the BatchNorm measurement says what its n is
    assert 'n = 4 images x 16 pixels = 64 values a channel' in out
    assert not any(l.startswith('read ') for l in out.splitlines())


def test_textbook_runs_each_chapter_s_recipe(textbook):
    result, out = textbook
    assert result['gluon']['backbone'] == 'resnet18_v2'
    assert result['torch'] == dict(backbone='resnet18_v1', lr=0.001,
                                   wd=1e-3, loss_sum=True, gluon_bn=False,
                                   torch_init=True)
    assert R.max_gap(result)[0] > 0.01  # two different recipes
    assert 'control_loss' not in result['steps'][0]
    assert result['controls'] == 0 and 'verdict' not in result
    assert '  PyTorch:     resnet18_v1, SGD lr 0.001, wd 0.001, gradient ' \
           'of the batch sum' in out
    assert '[neutralised' not in out and 'within the spread' not in out
    gap = max(abs(r['gluon_loss'] - r['torch_loss'])
              for r in result['steps'])
    verdict = out.split('verdict (textbook, float32): ')[1].splitlines()
    assert verdict[0] == 'the two chapters train differently, by design.'
    assert verdict[1].startswith(f'  Largest loss gap |Gluon - PyTorch| '
                                 f'{gap:.3g}')


@pytest.mark.parametrize('backbone', ['resnet18_v1', 'resnet18_v2'])
def test_matched_float64_is_the_same_update(synth_voc, tmp_path, capfd,
                                            backbone):
    """In float64 (on MXNet's naive engine) PyTorch stays within an order
    of magnitude of Gluon's own float64 rounding at every step: the
    matched recipes are the same; the verdict says so."""
    result = run_compare(synth_voc, tmp_path, 'matched', '--dtype',
                         'float64', '--backbone', backbone,
                         '--batch-size', '2', '--controls', '2')
    assert result['engine'] == 'NaiveEngine'
    loss_gap, acc_gap = R.max_gap(result)
    assert loss_gap < 1e-6 and acc_gap < 1e-4
    out = capfd.readouterr().out
    check_verdict(result, out)
    assert expected_verdict(result)['beyond'] is None


def test_verdict_reads_each_step_against_the_controls():
    """The rule on made-up steps: within the spread, within ORDER times
    it, or beyond (where: the forward pass at step 1, else the update
    before)."""
    def result(*rows):
        return {'dtype': 'float32', 'steps': [
            {'step': i + 1, 'gluon_loss': 1.0, 'torch_loss': 1.0 + gap,
             'control_loss': [1.0 + spread, 1.0 - spread / 2]}
            for i, (gap, spread) in enumerate(rows)]}

    alike = verdict(result((1e-7, 2e-7), (1e-4, 2e-4)))
    assert alike['within'] == 2 and alike['beyond'] is None
    assert alike['conclusion'] == 'the two frameworks train alike, to ' \
        'rounding'
    assert 'stays within the controls\' spread' in alike['evidence'][0]
    close = verdict(result((1e-7, 2e-7), (6e-4, 2e-4), (1e-3, 2e-3)))
    assert (close['within'], close['within_order']) == (2, 3)
    assert close['ratio'] == pytest.approx(3) and close['ratio_step'] == 2
    assert close['conclusion'] == alike['conclusion']
    assert 'at most 3.0x as far as the controls (step 2)' in \
        close['evidence'][0]
    assert f'within the spread at 2 of 3 steps, within {ORDER}x of it ' \
        'at 3' in close['evidence'][1]
    apart = verdict(result((1e-7, 2e-7), (1e-5, 2e-4),
                          (2 * ORDER * 2e-3, 2e-3)))
    assert apart['beyond'] == 3
    assert apart['conclusion'] == 'the two frameworks part beyond ' \
        'float32 rounding'
    farther = re.search(r'([\d.e+]+)x farther than the controls \(step '
                        r'(\d+)\)', apart['evidence'][0])
    assert float(farther.group(1)) == pytest.approx(2 * ORDER)
    assert farther.group(2) == '3'
    assert 'the update of step 2' in apart['evidence'][0]
    assert 'float64 tells which' in apart['evidence'][0]  # float32
    steps = result((1e-13, 2e-13), (1e-7, 2e-13))
    steps['dtype'] = 'float64'
    assert verdict(steps)['conclusion'] == 'the matched recipes differ'
    first = verdict(result((1e-3, 2e-7), (1e-3, 2e-3)))
    assert first['beyond'] == 1 and 'forward pass' in first['evidence'][0]
    # no spread at all: one rounding step of the loss still counts
    same = verdict(result((0.0, 0.0), (onp.spacing(onp.float32(1)), 0.0)))
    assert same['within'] == 2


def test_compare_bad_flags(capsys):
    assert main(['compare', '--steps', '0']) == 2
    assert '--steps must be a positive integer' in capsys.readouterr().err
    assert main(['compare', '--crop', '60,90']) == 2
    assert 'multiples of 32' in capsys.readouterr().err
    assert main(['compare', '--controls', '0']) == 2
    assert '--controls must be a positive integer' in \
        capsys.readouterr().err
