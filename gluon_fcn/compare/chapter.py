"""The PyTorch tab of the FCN chapter (:numref:`sec_fcn`, d2l 1.0.3) on
the port: torchvision's ImageNet resnet18 in `torch_port.resnet18`, the
chapter's net (`d2l_fcn`) and loss, SGD at lr 0.001, and d2l's PyTorch
`train_ch13`, which sums the loss over the batch before `backward`.

The data are d2l's VOC crops (`gluon_fcn.d2l.load_data_voc`, the same
normalisation and labels as the PyTorch tab's `VOCSegDataset`), each
batch handed to PyTorch as a tensor.
"""
import torch

from ..core.chapter import (ch13_result, check_batches, mode, timed,
                            watched)
from ..d2l import load_data_voc
from ..d2l.train import epochs_ch13
from ..errors import FCNError
from . import torch_port as tp
from .recipes import torch_train_batch

NUM_CLASSES = 21


def try_all_gpus():
    """Every CUDA device, else [cpu] (d2l's PyTorch `try_all_gpus`).

    Defined in :numref:`sec_use_gpu`"""
    devices = [torch.device(f'cuda:{i}')
               for i in range(torch.cuda.device_count())]
    return devices or [torch.device('cpu')]


def load_backbone(path):
    """The port's resnet18 holding torchvision's ImageNet state dict in
    the `.pth` file `path`."""
    pretrained_net = tp.resnet18()
    try:
        state = torch.load(path, map_location='cpu', weights_only=True)
        pretrained_net.load_state_dict(state)
    except Exception as e:  # pickle, zip, missing or unexpected keys
        raise FCNError(f'{path}: not a state dict of torchvision\'s '
                       f'resnet18 ({type(e).__name__})') from e
    return pretrained_net


def to_torch(X, y, device):
    """An MXNet batch as PyTorch's loader gives it: float images, long
    labels, on `device`."""
    return tp.to_torch(X).to(device), tp.to_torch(y).long().to(device)


def evaluate_accuracy_gpu(net, data_iter, device):
    """Pixel accuracy of `net` on `data_iter`, the net in eval mode.

    Defined in :numref:`sec_lenet`"""
    net.eval()
    correct, total = 0.0, 0
    with torch.no_grad():
        for X, y in data_iter:
            X, y = to_torch(X, y, device)
            correct += float((net(X).argmax(dim=1) == y).sum())
            total += y.numel()
    return correct / total


def train_ch13(net, train_iter, test_iter, loss, trainer, num_epochs,
               devices):
    """d2l's PyTorch `train_ch13` on one device: the loss summed over
    the batch for the gradient (`torch_train_batch` with `loss_sum`),
    the figures the Animator plots returned as points, the book's two
    closing lines printed (the MXNet port's epochs, `epochs_ch13`).

    Defined in :numref:`sec_image_augmentation`"""
    if loss is not tp.d2l_loss:
        raise FCNError('train_ch13 of the PyTorch tab takes its loss, '
                       'torch_port.d2l_loss')
    device = devices[0]
    net.to(device)

    def train_batch(features, labels):
        X, y = to_torch(features, labels, device)  # timed, as in the book
        l, acc = torch_train_batch(net, X, y, trainer, loss_sum=True)
        return l, acc, y.shape[0], y.numel()
    return epochs_ch13(train_iter, test_iter, num_epochs, devices,
                       train_batch, lambda data_iter: evaluate_accuracy_gpu(
                           net, data_iter, device))


def chapter_net(pretrained_net):
    """The PyTorch tab's FCN on `pretrained_net` (:numref:`sec_fcn`)."""
    return tp.d2l_fcn(NUM_CLASSES, pretrained_net=pretrained_net)


def run_pytorch(voc_dir, backbone, epochs, batch_size, crop, lr, wd,
                progress=True):
    """The PyTorch tab's training cell; returns `ch13_result`."""
    net = chapter_net(load_backbone(backbone))
    with mode(numpy=True):
        train_iter, test_iter = load_data_voc(batch_size, crop, voc_dir,
                                              num_workers=0)
        check_batches(train_iter, test_iter, voc_dir, batch_size, crop)
        devices = try_all_gpus()
        trainer = torch.optim.SGD(net.parameters(), lr=lr, weight_decay=wd)
        with watched(train_iter, test_iter, epochs, progress,
                     'pytorch') as (train_iter, test_iter, lines):
            points = train_ch13(net, train_iter, test_iter, tp.d2l_loss,
                                trainer, epochs, devices)
    return ch13_result(points, lines, devices)


def time_steps(batch_size, crop, steps=3):
    """Seconds a training and an evaluated example take in the PyTorch
    tab's net here (`core.chapter.time_steps`'s counterpart)."""
    device = try_all_gpus()[0]
    net = chapter_net(tp.resnet18()).to(device)
    trainer = torch.optim.SGD(net.parameters(), lr=0.001, weight_decay=1e-3)
    X = torch.randn((batch_size, 3) + tuple(crop), device=device)
    y = torch.randint(0, NUM_CLASSES, (batch_size,) + tuple(crop),
                      device=device)

    def test():
        net.eval()
        with torch.no_grad():
            net(X).argmax(dim=1)
    train = lambda: torch_train_batch(net, X, y, trainer, loss_sum=True)
    return tuple(timed(f, steps) / batch_size for f in (train, test))
