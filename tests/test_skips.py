"""Every skip in the suite names a cause that `make test`'s last line
counts it under (conftest.SKIP_CAUSES), so that a run says what it could
not check."""
import ast
import glob
import os

import pytest

from conftest import skip_cause
from notebook_harness import REQUIRES

HERE = os.path.dirname(os.path.abspath(__file__))


def static_text(node):
    """The text of a string or f-string node, its fields left out."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return ''.join(static_text(v) for v in node.values)
    return ''


def import_reason(name):
    """pytest.importorskip's reason where `name` is missing; the compare
    layer (the PyTorch port) is missing where torch is."""
    missing = 'torch' if name.startswith('gluon_fcn.compare') else \
        name.split('.')[0]
    return f"could not import '{name}': No module named '{missing}'"


def skip_reasons():
    """(file:line, reason) of each skip in the tests."""
    found = []
    for path in sorted(glob.glob(os.path.join(HERE, '*.py'))):
        with open(path) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, 'attr', getattr(node.func, 'id', ''))
            where = f'{os.path.basename(path)}:{node.lineno}'
            if name == 'skip' and node.args:
                found.append((where, static_text(node.args[0])))
            elif name == 'importorskip' and \
                    isinstance(node.args[0], ast.Constant):
                found.append((where, import_reason(node.args[0].value)))
            elif name == 'skipif':
                reason = next(k.value for k in node.keywords
                              if k.arg == 'reason')
                found.append((where, static_text(reason)))
    # the lessons' own requirements (importorskip(REQUIRES[name]))
    found += [(f'notebook_harness.REQUIRES[{notebook!r}]',
               import_reason(module))
              for notebook, module in REQUIRES.items()]
    return found


def test_the_suite_has_skips_to_check():
    assert len(skip_reasons()) > 20


@pytest.mark.parametrize('where,reason', skip_reasons())
def test_each_skip_names_a_counted_cause(where, reason):
    assert skip_cause(reason) != reason, f'{where}: {reason!r}'
