"""What a run was trained on, recorded in its config.json and
metrics.json, and the note `predict` and `evaluate` give for a run that
saw only synthetic data: its flat drawings of five classes teach nothing
about photos, and nothing else would say so.
"""
import os

from ..core.files import load_json
from ..core.synthetic import DEFAULT_CLASSES, synthetic_info
from ..d2l import VOC_CLASSES


def data_record(data, voc_dir):
    """{'data_kind': 'synthetic' (a folder gluon-fcn drew), 'voc2012' or
    'folder' (any other), 'data_folder': `voc_dir`}, and for synthetic
    data 'synthetic_classes', the names of the classes drawn."""
    info = synthetic_info(voc_dir)
    if info:
        return {'data_kind': 'synthetic', 'data_folder': voc_dir,
                'synthetic_classes': info['class_names']}
    return {'data_kind': 'voc2012' if data == 'voc2012' else 'folder',
            'data_folder': voc_dir}


def synthetic_note(run_dir):
    """One line for a run trained on synthetic data: photos will not
    segment well, and the ways to a real model; None for other runs."""
    saved = load_json(os.path.join(run_dir, 'config.json'))
    # runs from before data_kind was recorded: --data synthetic
    kind = saved.get('data_kind') or saved.get('data')
    if kind != 'synthetic':
        return None
    classes = saved.get('synthetic_classes') or [VOC_CLASSES[c] for c in
                                                 DEFAULT_CLASSES]
    return (f'{run_dir} was trained on synthetic data only (flat drawings '
            f'of {", ".join(classes)}), so photos will not segment well; '
            'for a real model: predict --model fcn_resnet101_voc '
            '(pretrained), or train --data voc2012 --pretrained (README: '
            'Reproducing the textbook on VOC2012)')
