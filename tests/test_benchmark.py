"""benchmarks/bench_fcn.py runs and writes its table and JSON (a smoke
run: the speeds of `--quick` mean nothing and are not checked)."""
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
