"""benchmarks/bench_fcn.py runs and writes its table and JSON (a smoke
run: the speeds of `--quick` mean nothing and are not checked)."""
import importlib.util
import json
import os
import subprocess
import sys

SCRIPT = os.path.join(os.path.dirname(__file__), '..', 'benchmarks',
                      'bench_fcn.py')


def test_quick_benchmark_writes_its_table_and_json(tmp_path):
    out = tmp_path / 'bench'
    proc = subprocess.run([sys.executable, SCRIPT, '--quick', '--precision',
                           'fp32', '--out', str(out)], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.load(open(f'{out}.json'))
    machine = result['machine']
    assert machine['cpu'] and proc.stdout.startswith(f'CPU: {machine["cpu"]}')
    for framework in ('mxnet', 'torch'):  # the ISA line of each oneDNN
        assert f'{framework} oneDNN ' in proc.stdout
    models = result['models']
    assert set(models) == {'gluon', 'gluon (inference, fp32)',
                           'pytorch (d2l port)'}
    for name in ('gluon', 'pytorch (d2l port)'):
        assert models[name]['train'] > 0 and models[name]['forward'] > 0
        assert f'| {name} | ' in proc.stdout
    assert models['gluon (inference, fp32)']['latency_s'] > 0
    for row in models.values():  # each median inside its spread
        for kind in ('train', 'forward', 'latency_s'):
            if kind in row:
                assert row[f'{kind}_min'] <= row[kind] <= row[f'{kind}_max']
    assert '(median, and the slowest and fastest iteration)' in proc.stdout
    assert result['summary']['forward_ratio'] > 0
    assert 'train: gluon / best pytorch fp32' in proc.stdout
    assert os.path.getsize(f'{out}.png') > 1000


EXPORT_SCRIPT = os.path.join(os.path.dirname(SCRIPT), 'bench_export.py')


def test_export_benchmark_times_both_runtimes_on_equal_logits():
    proc = subprocess.run([sys.executable, EXPORT_SCRIPT, '--crop', '64,96',
                           '--batch-size', '2', '--repeat', '1'],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.splitlines()[-1])
    names = [row['name'] for row in result['rows']]
    assert names[0].startswith('mxnet') and names[1].startswith('onnxruntime')
    assert all(row['images_per_sec'] > 0 for row in result['rows'])
    assert result['max_relative_error'] < 1e-4
    assert 'logical CPUs; FCN-32s forward, batch 2 of 64x96' in proc.stdout


def bench_fcn():
    spec = importlib.util.spec_from_file_location('bench_fcn', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_table_names_the_precision_paths_and_auto_s_pick(monkeypatch):
    """Printing only (no timing): an Intel CPU without AMX, faked."""
    from gluon_fcn.fast import cpu
    bench = bench_fcn()
    monkeypatch.setenv(cpu.FAKE_VAR,
                       'GenuineIntel avx512f avx512bw avx512_bf16')
    m = bench.precision_paths()
    rows = {bench.inference_row(p): {'forward': rate}
            for p, rate in (('fp32', 2.0), ('bf16', 1.5), ('int8', 4.0))}
    paths, pick = bench.precision_lines(m, bench.auto_pick(rows))
    assert paths == ('precision paths: fp32 on AVX-512; bf16 on AVX-512 '
                     'BF16; int8 on AVX-512; AMX off; bf16 is slower than '
                     'fp32 on this CPU (no AMX)')
    assert pick.startswith('auto: int8 by speed alone (4.0 img/s; ')
    kept = {'precision': 'bf16', 'rates': {'fp32': 1.0, 'bf16': 2.0},
            'kept': {'fp32': 1.0, 'bf16': 0.995}}
    assert bench.precision_lines(m, kept)[1] == (
        'auto: bf16 on the run (2.0 img/s, 99.5% of the calibration pixels '
        'in their fp32 class)')
    monkeypatch.setenv(cpu.FAKE_VAR, 'GenuineIntel avx2 amx_bf16 amx_int8')
    paths = bench.precision_lines(bench.precision_paths(), None)[0]
    assert paths == ('precision paths: fp32 on AVX2; bf16 on AMX; int8 on '
                     'AMX; AMX on')


def summary_of(**ratios):
    keys = ('train_ratio', 'train_ratio_as_written', 'forward_ratio',
            'forward_ratio_as_written', 'rss_ratio', 'bf16_over_fp32',
            'int8_over_fp32', 'bf16_over_torch_bf16', 'int8_over_torch_bf16',
            'best_reduced_over_fp32', 'bf16_train_over_fp32',
            'bf16_train_rss_ratio', 'after_training_over_fresh')
    return {k: ratios.get(k) for k in keys}


def test_the_goals_follow_the_cpu():
    """Issue 22's goals: with AMX 3x fp32 for bf16 and int8 (and 1.8x in
    bf16 training), with VNNI 2x for int8, on any CPU the best reduced
    precision at least fp32; printing only."""
    bench = bench_fcn()
    amx = {'amx': True, 'cpu_flags': ['avx512f', 'avx512_vnni', 'amx_bf16']}
    vnni = {'amx': False, 'cpu_flags': ['avx512f', 'avx512_vnni']}
    plain = {'amx': False, 'cpu_flags': ['avx512f']}
    assert bench.reduced_goals(amx) == {'bf16': 3.0, 'int8': 3.0}
    assert bench.reduced_goals(vnni) == {'bf16': None, 'int8': 2.0}
    assert bench.reduced_goals(plain) == {'bf16': None, 'int8': None}
    s = summary_of(bf16_over_fp32=1.4, int8_over_fp32=2.1,
                   best_reduced_over_fp32=2.1, bf16_train_over_fp32=1.1)
    lines = bench.goal_lines(s, {}, vnni)
    assert 'int8 (sums fused): / gluon fp32 2.10x (goal >= 2.0), ' \
        '/ best pytorch bf16 -x; pixels' in '\n'.join(lines)
    assert any(line.startswith('bf16: / gluon fp32 1.40x, /')
               for line in lines)
    assert 'best reduced precision forward / gluon fp32 2.10x (goal >= ' \
        '1.0, any CPU)' in lines
    assert any('bf16 mixed training / gluon fp32 training 1.10x (the goal '
               'is for AMX; none here)' in line for line in lines)
    amx_lines = '\n'.join(bench.goal_lines(s, {}, amx))
    assert 'bf16: / gluon fp32 1.40x (goal >= 3.0)' in amx_lines
    assert '1.10x (goal >= 1.8)' in amx_lines


def test_spread_gives_the_median_and_the_extremes_as_rates():
    bench = bench_fcn()
    rounds = [[0.5, 1.0, 2.0], [1.0, 1.0, 4.0]]  # seconds a batch of 2
    row = dict(bench.spread('train', rounds, 2))
    assert row == {'train': 2.0, 'train_min': 0.5, 'train_max': 4.0}
    latency = dict(bench.spread('predict', rounds, 2))
    assert latency == {'latency_s': 1.0, 'latency_s_min': 0.5,
                       'latency_s_max': 4.0}
    assert bench.spread_cell(row, 'train', '.1f') == '2.0 (0.5-4.0)'
