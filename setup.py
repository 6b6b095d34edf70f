"""gluon-fcn: the d2l Fully Convolutional Network in MXNet Gluon."""
from setuptools import find_packages, setup

setup(
    name='gluon-fcn',
    version='0.1.0',
    description=('MXNet Gluon reference implementation of Fully '
                 'Convolutional Networks, as in Dive into Deep Learning'),
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['gluon_fcn', 'gluon_fcn.*']),
    # the native operators' source, compiled on first use (native.py)
    package_data={'gluon_fcn': ['csrc/*.cc']},
    python_requires='>=3.8',
    install_requires=[
        'gluoncv==0.10.5',
        'numpy<1.24',  # MXNet 1.9.1 breaks on NumPy >= 1.24
        'matplotlib',
        'tqdm',
        'Pillow',
        'requests',
        'opencv-python<4.9',  # gluoncv needs it; newer builds need NumPy 2
    ],
    extras_require={
        'cpu': ['mxnet==1.9.1'],
        'cu112': ['mxnet-cu112==1.9.1'],
        'test': ['pytest', 'nbclient', 'nbformat', 'ipykernel', 'pandas'],
        # gluon_fcn.torch_port and `gluon-fcn compare`; pinned: an unpinned
        # torch pulls the CUDA build (gigabytes); 2.13.0 has a CPU wheel
        'compare': ['torch==2.13.0'],
    },
    entry_points={'console_scripts': ['gluon-fcn=gluon_fcn.app.cli:main']},
    classifiers=['Programming Language :: Python :: 3',
                 'License :: OSI Approved :: Apache Software License'],
    license='Apache-2.0',
)
