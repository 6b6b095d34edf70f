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
