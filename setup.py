"""gluon-fcn: the d2l Fully Convolutional Network in MXNet Gluon."""
from setuptools import find_packages, setup

NUMPY = 'numpy<1.24'  # MXNet 1.9.1 breaks on NumPy >= 1.24

setup(
    name='gluon-fcn',
    version='0.2.0',
    description=('MXNet Gluon reference implementation of Fully '
                 'Convolutional Networks, as in Dive into Deep Learning'),
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['gluon_fcn', 'gluon_fcn.*']),
    # the native operators' source, compiled on first use (native.py)
    package_data={'gluon_fcn': ['fast/csrc/*.cc']},
    python_requires='>=3.8',
    install_requires=[
        'gluoncv==0.10.5',
        NUMPY,
        'matplotlib==3.10.9',
        'tqdm==4.70.1',
        'Pillow==13.0.0',
        'requests==2.34.2',
        'opencv-python<4.9',  # gluoncv needs it; newer builds need NumPy 2
    ],
    # every extra is pinned and constrained by NUMPY: MXNet 1.9.1 breaks
    # on NumPy >= 1.24, and pip would otherwise upgrade it for a new pin
    extras_require={
        'cpu': ['mxnet==1.9.1', NUMPY],
        'cu112': ['mxnet-cu112==1.9.1', NUMPY],
        'test': ['pytest==9.2.0', 'nbclient==0.11.0', 'nbformat==5.11.1',
                 'ipykernel==7.4.0', 'pandas==2.3.3', 'nbconvert==7.17.2',
                 'scikit-learn==1.7.2', NUMPY],
        # the lessons: JupyterLab to open them, nbconvert for `make docs`,
        # scikit-learn for its sample photo and handwritten digits
        'notebooks': ['jupyterlab==4.6.6', 'nbconvert==7.17.2',
                      'nbclient==0.11.0', 'ipykernel==7.4.0',
                      'scikit-learn==1.7.2', NUMPY],
        # gluon_fcn.compare and `gluon-fcn compare`; pinned: an unpinned
        # torch pulls the CUDA build (gigabytes); 2.13.0 has a CPU wheel.
        # torchvision's model code, for the parity tests of
        # `--model torchvision:NAME` (its compiled operators do not load
        # beside CPU torch: gluon_fcn.compare.vision); 0.28.0 needs
        # torch==2.13.0 and nothing of CUDA
        'compare': ['torch==2.13.0', 'torchvision==0.28.0', NUMPY],
        # `gluon-fcn export --format onnx` (MXNet 1.9.1's exporter) and
        # `predict --onnx`
        'export': ['onnx==1.15.0', 'onnxruntime==1.32.0', NUMPY],
    },
    entry_points={'console_scripts': ['gluon-fcn=gluon_fcn.app.cli:main']},
    classifiers=['Programming Language :: Python :: 3',
                 'License :: OSI Approved :: Apache Software License'],
    license='Apache-2.0',
)
