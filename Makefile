# Two commands do all the set-up on a fresh machine: `make demo`, `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
GLUON_FCN := $(VENV)/bin/gluon-fcn

# The demo: the chapter's FCN (resnet18_v2, SGD lr 0.1, wd 1e-3) trained
# from scratch on the synthetic data (its time, per CPU: README, results log).
DEMO_RUN := runs/demo
DEMO_FLAGS := --data synthetic --synth-scale 0.5 --synth-train 400 \
	--synth-val 60 --crop 160,224 --batch-size 8 --epochs 10 --seed 0
DEMO_DATA := data/synthetic_400_60_x0.5

.PHONY: demo test install lab docs clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

$(VENV)/.installed-cpu: setup.py | $(PY)
	$(PIP) install -e '.[cpu]'
	touch $@

$(VENV)/.installed-test: setup.py $(VENV)/.installed-cpu
	$(PIP) install -e '.[cpu,test,compare,notebooks,export]'
	# the two books' own libraries are the references the tests compare
	# against: d2l 1.0.3 (2nd edition) and d2lzh 1.0.0 (v1); their pinned
	# dependencies (gym 0.21, an old mxnet, ...) do not install on 3.11
	$(PIP) install --no-deps d2l==1.0.3 d2lzh==1.0.0
	touch $@

$(VENV)/.installed-notebooks: setup.py $(VENV)/.installed-cpu
	$(PIP) install -e '.[cpu,notebooks]'
	touch $@

install: $(VENV)/.installed-cpu

demo: $(VENV)/.installed-cpu
	$(GLUON_FCN) train $(DEMO_FLAGS) --out $(DEMO_RUN) --overwrite
	$(GLUON_FCN) predict --run $(DEMO_RUN) --out $(DEMO_RUN)/predict \
		$$(head -n 4 $(DEMO_DATA)/ImageSets/Segmentation/val.txt | \
		  sed 's|.*|$(DEMO_DATA)/JPEGImages/&.jpg|')
	$(GLUON_FCN) evaluate --run $(DEMO_RUN) --data $(DEMO_DATA) \
		--labels voc --json $(DEMO_RUN)/eval.json
	@echo "demo: see $(DEMO_RUN)/curves.png, $(DEMO_RUN)/predictions.png," \
		"$(DEMO_RUN)/eval_iou.png, $(DEMO_RUN)/eval_best_worst.png" \
		"and $(DEMO_RUN)/predict/"

# The suite in PARTS processes, each a share of the modules of about
# equal cost, LANES at a time, each given its share of the cores: MXNet keeps
# the memory a process has used, and most tests keep one core busy. Then
# the numerical tests again, a process each, with oneDNN held to a lower
# instruction set: the kernels other CPUs take (tests/suite.py; README,
# "Development"). ORDER=reverse or ORDER=random[:SEED] reorders the
# suite; a random order's seed is drawn once for all parts.
ORDER ?= file
PARTS ?= 6
LANES ?= 2
LOWER_ISAS := AVX2 AVX512_CORE

test: $(VENV)/.installed-test
	$(PY) tests/suite.py --order $(ORDER) --parts $(PARTS) \
		--lanes $(LANES) $(addprefix --isa ,$(LOWER_ISAS))

# the lessons in JupyterLab (notebooks/, README "Lessons")
lab: $(VENV)/.installed-notebooks
	$(VENV)/bin/jupyter lab notebooks

# every lesson executed and rendered to docs/ (git-ignored), index.html
docs: $(VENV)/.installed-notebooks
	$(PY) notebooks/make_docs.py --out docs

clean:
	rm -rf $(VENV) runs *.egg-info
