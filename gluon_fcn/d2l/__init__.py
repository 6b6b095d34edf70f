"""The 2nd edition of d2l's FCN chapter (d2l 1.0.3, MXNet's NumPy mode),
under the book's own names and signatures.

Use it as the book uses `d2l`: ``from gluon_fcn import d2l`` after
``npx.set_np()``. Sections: :numref:`sec_transposed_conv`,
:numref:`sec_semantic_segmentation`, :numref:`sec_fcn`, and the helpers
they call from :numref:`sec_multi_gpu` and :numref:`sec_image_augmentation`.
"""
from .data import (RGB_MEAN, RGB_STD, VOC_CLASSES, VOC_COLORMAP,
                   VOCSegDataset, get_dataloader_workers, load_data_voc,
                   read_voc_images, voc_colormap2label, voc_label_indices,
                   voc_rand_crop)
from .download import VOC_SHA1, VOC_SUBDIR, VOC_URL, download_voc
from .fcn import (bilinear_kernel, label2image, normalize_image, predict,
                  show_images)
from .primer import (conv_output_size, corr2d, kernel2matrix, trans_conv,
                     trans_conv_output_size, upsampling_params)
from .train import (accuracy, evaluate_accuracy_gpus, split_batch,
                    train_batch_ch13, train_ch13, try_all_gpus, try_gpu)
