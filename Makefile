# The only commands a newcomer needs: make run, make test.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PARAMS ?= params.yaml
ARGS   ?=

.PHONY: run test lab bench bench-index bench-shopper index data browser backgrounds localiser setup clean shipped-model

## run: set up everything, then run the notebook pipeline on params.yaml (ARGS="--force" etc.)
run: setup data
	$(VENV)/bin/fashion-search run --params $(PARAMS) $(ARGS)

## shipped-model: rebuild the shipped model (fashion_lite0): Lite0's top blocks and the heads trained on cached lower blocks of ../shared/data/fashion-products-small and the dev photos' train part, chosen on their validation part (about 50 min on 2 cores)
shipped-model: setup backgrounds
	$(PY) -m fashion_search.pipeline.tuned_training --small ../shared/data/fashion-products-small --dev $(PHOTOS) \
		--tops last-5-blocks --top-epochs 10 --out outputs/tuned/model
	$(PY) -m fashion_search.models.shipped outputs/tuned/model

## localiser: retrain the shipped garment localiser (its three heads) on made shopper photos; ~30 minutes on 2 cores
localiser: setup backgrounds
	$(PY) -m fashion_search.models.localiser_training --small ../shared/data/fashion-products-small --dev $(PHOTOS)

## bench-shopper: search from shopper-like photos of the dev test half: whole photo, localiser, true mask (~10 minutes)
bench-shopper: setup backgrounds
	$(PY) benchmarks/shopper_photos.py --photos $(PHOTOS)

## test: the test suite (unit tests, one tiny end-to-end papermill run, the web page in headless Chromium),
## its files shared out between two processes (TEST_ARGS="-n 0" for one process; TEST_ARGS="-m 'not slow'" for the quick part)
TEST_ARGS ?=
test: setup browser
	$(PY) -m pytest -q -n 2 --dist loadfile $(TEST_ARGS) tests

## lab: JupyterLab on notebooks/ with the project's kernel, "Python (fashion-search)" (LAB_ARGS="--port 8890" etc.)
LAB_ARGS ?=
lab: setup
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

## bench: feature-extraction throughput, the model on ONNX Runtime vs TensorFlow, indexing speed and frozen-feature retrieval on the dev photos (JSON + Markdown in benchmarks/results/)
PHOTOS ?= ../shared/data/fashion-products-dev
bench: setup
	$(PY) benchmarks/throughput.py --photos $(PHOTOS)
	$(PY) benchmarks/model_runtime.py --photos $(PHOTOS)
	$(PY) benchmarks/indexing_speed.py --photos $(PHOTOS)
	$(PY) benchmarks/dev_photos_retrieval.py --photos $(PHOTOS)

## index: a search index of a catalogue (CATALOGUE: a photo folder, a Farfetch folder or fashion-mnist)
CATALOGUE ?= $(PHOTOS)
INDEX ?= outputs/dev-index
index: setup
	$(VENV)/bin/fashion-search index $(CATALOGUE) --index $(INDEX) $(ARGS)

## bench-index: index kinds (faiss, Milvus Lite) at 10k/100k/1M vectors like those of the index made by `make index`, query latency, HTTP load, colour names
bench-index: setup
	$(PY) benchmarks/index_scaling.py --index $(INDEX)
	$(PY) benchmarks/query_latency.py --index $(INDEX)
	$(PY) benchmarks/serve_load.py --index $(INDEX)
	$(PY) benchmarks/colour_names.py --photos $(PHOTOS)

## setup: virtual environment with the pinned requirements, the package and its Jupyter kernel
setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	PYTHONWARNINGS="ignore:Editable installation" $(PY) -m pip install --quiet --no-deps -e .  # no setuptools banner
	$(PY) -m ipykernel install --sys-prefix --name fashion-search --display-name "Python (fashion-search)"
	touch $@

## data: the embedded default catalogue, Fashion-MNIST, from Debian's package where apt-get can install it
data:
	@if [ -d /usr/share/datasets/fashion-mnist ]; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		(apt-get install -y -qq dataset-fashion-mnist || (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist)) >/dev/null; \
	else echo "note: /usr/share/datasets/fashion-mnist is missing and apt-get needs root;" \
		"run 'sudo apt-get install dataset-fashion-mnist', or the pipeline downloads it with keras"; fi

## backgrounds: the photos products are pasted on to train and measure the localiser (seven Debian packages)
BACKGROUND_PACKAGES = mate-backgrounds gnome-backgrounds plasma-workspace-wallpapers ukui-wallpapers \
	lomiri-wallpapers-16.04 lomiri-wallpapers-20.04 mypaint-data-extras
backgrounds:
	@if [ "$$(dpkg-query -W -f='$${db:Status-Abbrev}\n' $(BACKGROUND_PACKAGES) 2>/dev/null | grep -c '^ii')" \
		= "$(words $(BACKGROUND_PACKAGES))" ]; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		(apt-get install -y -qq $(BACKGROUND_PACKAGES) || (apt-get update -qq && apt-get install -y -qq $(BACKGROUND_PACKAGES))) >/dev/null; \
	else echo "note: the localiser's backgrounds need: sudo apt-get install $(BACKGROUND_PACKAGES)"; fi

## browser: Debian's chromium and chromium-driver, which the web page's test drives
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		(apt-get install -y -qq chromium chromium-driver || (apt-get update -qq && apt-get install -y -qq chromium chromium-driver)) >/dev/null; \
	else echo "note: the web page's test needs chromium and chromium-driver: sudo apt-get install chromium chromium-driver"; fi

clean:
	rm -rf outputs/*/ $(VENV)
