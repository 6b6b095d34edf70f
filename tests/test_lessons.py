"""The lesson notebooks run top to bottom, small, and show what they say.

The lessons and the overrides that make them small are LESSONS in
notebook_harness.py; each runs once a session, shared with test_docs.py.
"""
import re

import pytest

from gluon_fcn.d2l import VOC_CLASSES

pytest.importorskip('nbclient')
pytest.importorskip('ipykernel')

from notebook_harness import (LESSONS, REQUIRES,  # noqa: E402
                              assert_committed_clean, assert_figures,
                              assert_images, cell_running, code_cells,
                              count_images, figures_drawn, figures_in,
                              outputs_text,
                              run_lesson)


@pytest.fixture(scope='module')
def lesson(tmp_path_factory):
    """Run a lesson once, with its overrides, on first use."""
    pytest.importorskip('sklearn')  # the photos and the digits
    root = tmp_path_factory.mktemp('lessons')

    def run(name):
        if name in REQUIRES:
            pytest.importorskip(REQUIRES[name])
        return run_lesson(name, root)
    return run


def printed(nb):
    return ''.join(outputs_text(c) for c in code_cells(nb))


@pytest.mark.parametrize('name', sorted(LESSONS))
def test_lesson_runs_clean_and_draws(name, lesson):
    assert_committed_clean(name)
    nb = lesson(name)
    assert sum(count_images(c) for c in code_cells(nb)) >= 1
    for cell in code_cells(nb):  # every figure says what it shows
        for fig in figures_in(cell):
            assert fig['suptitle'] or any(fig['titles']), cell.source


def test_transposed_conv_lesson_shows_the_books_results(lesson):
    nb = lesson('transposed_conv.ipynb')
    text = printed(nb)
    assert '[ 4. 12.  9.]' in text  # d2l's trans_conv(X, K)
    assert 'W is (4, 16)' in text  # d2l v1's matrix
    assert text.count('[348. 393. 528. 573.]') == 2  # conv and W @ x
    assert '(1, 3, 64, 64) -> (1, 10, 32, 32)' in text
    assert '(1, 10, 32, 32) -> (1, 3, 64, 64)' in text
    assert '(1, 10, 16, 16) -> (1, 20, 6, 6) -> (1, 10, 16, 16)' in text
    gradient = outputs_text(cell_running(nb, 'y.backward(head)'))
    rows = [line.split(':')[1].split() for line in gradient.splitlines()
            if ':' in line]
    assert len(rows) == 3 and rows[0] == rows[1] == rows[2]
    for example, shape in (('4x4, 3x3 VALID', '(1, 1, 2, 2)'),
                           ('5x5, 3x3 SAME', '(1, 1, 5, 5)'),
                           ('5x5, 3x3 stride 2 VALID', '(1, 1, 2, 2)'),
                           ('and transposed back', '(1, 1, 5, 5)')):
        assert re.search(rf'{example}\s+-> {re.escape(shape)}', text)
    assert 'crop (1, 3, 64, 64), pooled (1, 3, 32, 32)' in text
    inside = re.search(r'largest difference inside: (\S+),', text)
    assert float(inside.group(1)) < 1e-5
    assert '(320, 480)' in text  # the FCN's 32x upsampler on 10 x 15
    # under the profile: nearest copies each window's maximum, so never
    # falls below the photo; unpooling is zero between its spikes
    shares = dict(re.findall(r'(nearest|bilinear|max unpooling) +at or '
                             r'above the photo at +(\d+)%', text))
    assert shares['nearest'] == '100'
    assert int(shares['max unpooling']) < 50 < int(shares['bilinear'])
    assert_figures(nb, 'fig.suptitle', "label='photo'",
                   'ax.plot(onp.arange')


def test_autoencoder_lesson_shows_shapes_training_and_latent_space(lesson):
    nb = lesson('autoencoder.ipynb')
    text = printed(nb)
    assert "data: scikit-learn's 8x8 handwritten digits" in text
    assert ('(1, 1, 28, 28) -> (1, 32, 14, 14) -> (1, 64, 7, 7) -> '
            '(1, 2, 1, 1) -> (1, 64, 7, 7) -> (1, 32, 14, 14) -> '
            '(1, 1, 28, 28)') in text
    assert re.search(r'after 2 epochs: training loss [\d.]+, test error',
                     text)
    assert 'decoding latent point (1.00, -2.00)' in text  # the override
    # the inputs are titled by their digit, one of the lesson's three
    fig, = figures_drawn(nb, 'ae.decode(net, ae.encode(')
    inputs = [t for t in fig['titles'] if t != 'reconstructed']
    assert len(inputs) == 6
    assert all(re.fullmatch(r'digit [156]', t) for t in inputs), inputs
    assert_figures(nb, 'load_digit_images', 'train_autoencoder(',
                   'ae.decode(net, ae.encode(', 'def scatter_latent',
                   'if latent_point is None')


def test_fcn_lesson_shows_the_chapter(lesson):
    nb = lesson('fcn.ipynb')
    text = printed(nb)
    assert 'crop (64, 96), 1 epochs, batch 4' in text  # the overrides
    assert text.count('348.') >= 2 and '573.' in text  # conv and W @ x
    assert '(1, 10, 32, 32) -> (1, 3, 64, 64)' in text
    assert '(1, 512, 10, 15) -> (1, 21, 320, 480)' in text
    training = outputs_text(cell_running(nb, 'points = train_ch13('))
    assert re.search(r'loss [\d.]+, train acc [\d.]+, test acc [\d.]+',
                     training)
    assert 'examples/sec on [cpu(0)]' in training
    assert count_images(code_cells(nb)[-1]) == 1  # the chapter's last
    fig, = figures_drawn(nb, 'colormap2label = voc_colormap2label()')
    assert fig['legend'][0] == 'background' and len(fig['legend']) >= 2
    assert_figures(nb, 'upsampled 2x', "ax.set_title(f'Training the FCN")


def test_fcn_v1_lesson_trains_and_draws(lesson):
    nb = lesson('fcn_v1.ipynb')
    text = printed(nb)
    assert 'training on [cpu(0)]' in text
    assert re.search(r'epoch 1, loss [\d.]+, train acc [\d.]+, test acc '
                     r'[\d.]+, time [\d.]+ sec', text)
    assert_images(nb, "d2l.plt.title('input image')", 2)
    assert_images(nb, 'd2l.show_images(imgs')
    # the predictions' legend: the classes present, by VOC's names
    fig, = figures_drawn(nb, 'd2l.show_images(imgs')
    assert fig['legend'][0] == 'background' and len(fig['legend']) >= 2
    assert set(fig['legend']) <= set(VOC_CLASSES) | {'border (background)'}


def test_exercises_lesson_answers_all_four(lesson):
    nb = lesson('fcn_exercises.ipynb')
    text = printed(nb)
    for run in ('FCN-32s, bilinear upsampler, lr 0.1, wd 0.001:',
                'FCN-32s, xavier upsampler, lr 0.1, wd 0.001:',
                'FCN-32s, bilinear upsampler, lr 0.3, wd 0.001:',
                'FCN-8s, bilinear upsampler, lr 0.1, wd 0.001:'):
        assert text.count(run) == 1, run  # each run trained once
    assert len(re.findall(r'epoch 1: loss [\d.]+, .* test mIoU [\d.]+',
                          text)) == 4
    for table in ('bilinear (the chapter)', 'whole images, sliding windows',
                  'FCN-8s'):
        assert table in text
    for snippet in ('predict_mask(net, img, window',
                    "suptitle('Exercise 4: predictions"):
        fig, = figures_drawn(nb, snippet)  # the classes, by name
        assert fig['legend'] and set(fig['legend']) <= set(VOC_CLASSES)
    assert_figures(nb, "init_names = ['bilinear",
                   "ax.set_xlabel('learning", 'predict_mask(net, img, window',
                   "head_names = ['FCN", "suptitle('Exercise 4: predictions")


def test_binary_lesson_masks_and_beats_nothing_by_name(lesson):
    nb = lesson('binary_segmentation.ipynb')
    text = printed(nb)
    assert ('(1, 3, 64, 64) -> pool3 (1, 256, 8, 8) -> pool4 '
            '(1, 512, 4, 4) -> fc7 (1, 4096, 2, 2) -> output '
            '(1, 2, 64, 64)') in text
    total, trained = (int(n.replace(',', '')) for n in re.search(
        r'([\d,]+) parameters, ([\d,]+) of them trained', text).groups())
    assert total > 10 ** 8 and 0 < trained < 20000  # the head only
    assert re.search(r'epoch 1: loss [\d.]+', text)
    table = outputs_text(cell_running(nb, 'baseline_hist +='))
    model, baseline = (re.search(rf'{name}\s+([\d.]+)\s+([\d.]+)', table)
                       for name in ('VGG16 FCN-8s', 'all background'))
    assert float(baseline.group(2)) == 0  # no object found, IoU 0
    assert 0 < float(baseline.group(1)) < 1  # the background's share
    assert 0 <= float(model.group(2)) <= 1
    assert_figures(nb, "cmap='gray', vmin=0", "label='training loss'",
                   "cmap='Blues', alpha=0.5", 'ax.bar(')


def test_comparison_lesson_tables_and_curves(lesson):
    nb = lesson('pytorch_comparison.ipynb')
    text = printed(nb)
    assert 'MXNet:   (1, 3, 320, 480) -> (1, 512, 10, 15) -> ' \
        '(1, 21, 320, 480)' in text
    assert 'PyTorch: (1, 3, 320, 480) -> (1, 21, 320, 480)' in text
    table = cell_running(nb, 'rows = differences(').outputs[0]['data']
    for aspect in ('loss reduction', 'learning rate', 'BatchNorm momentum',
                   'transposed conv initialisation'):
        assert aspect in table['text/html']
    # batch 2: PyTorch sums the loss, twice Gluon's gradient; the same
    # weights, so within float32 rounding (test_differences_are_measured)
    ratio = re.search(r'PyTorch gradient / Gluon gradient = ([0-9.]+)',
                      table['text/html'])
    assert float(ratio.group(1)) == pytest.approx(2, rel=1e-3)
    gaps = outputs_text(cell_running(nb, 'gaps.append('))
    for row in ('matched: Gluon - PyTorch', 'matched: Gluon - control',
                'textbook: Gluon - PyTorch'):
        assert row in gaps
    # the verdict: its conclusion first, then the evidence, then the gap
    # and spread of each step
    said = outputs_text(cell_running(nb, 'found = verdict(matched)'))
    lines = said.splitlines()
    assert re.fullmatch(r'verdict: the (two frameworks|matched recipes) '
                        r'[^.]+\.', lines[0])
    assert 'PyTorch' in lines[1] and 'spread' in lines[2]
    assert_images(nb, "plot_comparison(matched")
    assert_images(nb, "plot_comparison(textbook")


def test_pretrained_lesson_falls_back_and_lists_classes(lesson):
    nb = lesson('pretrained_fcn.ipynb')
    text = printed(nb)
    assert text.count('No pretrained fcn_resnet101_voc here') == 1
    assert 'segmenting with a small FCN trained here for 1 epochs' in text
    assert 'china.jpg: output shape (1, 21, 427, 640)' in text
    found = re.findall(r'classes detected: \[([\d ]+)\] = (.+)', text)
    assert len(found) == 5  # two photos, two synthetic images; torchvision
    for indices, names in found:
        assert names == ', '.join(VOC_CLASSES[int(i)]
                                  for i in indices.split())
    assert_images(nb, 'img, om, classes_in_image = segment(')
    assert_images(nb, 'for path in photos[1:]', 3)
    # torchvision's FCN, offline: random weights through a .pth, said so
    assert text.count('No pretrained torchvision:fcn_resnet50 here') == 1
    assert 'segmenting with torchvision:fcn_resnet50 with RANDOM ' \
        'weights' in text
    assert 'china.jpg: output shape (1, 21, 64, 96)' in text  # resized
    assert_images(nb, 'segment(photos[0], tv_net')
