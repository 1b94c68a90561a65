# edgeward — the README's commands. Each installs dependencies, configures and builds first.
BUILD ?= build
JOBS  ?= $(shell nproc)
CMAKE_FLAGS ?= -DCMAKE_BUILD_TYPE=RelWithDebInfo

.PHONY: all deps configure build demo test bench format clean

all: build

deps:
	@bash scripts/setup-deps.sh

configure: deps
	@cmake -S . -B $(BUILD) -G Ninja $(CMAKE_FLAGS) >/dev/null

build: configure
	@cmake --build $(BUILD) -j $(JOBS)

demo: build
	$(BUILD)/src/cli/edgeward demo

test: build
	cd $(BUILD) && ctest --output-on-failure --timeout 600 -j 1

bench: build
	bash bench/run.sh $(BUILD)

format:
	@git ls-files '*.cc' '*.h' | grep -v '^bpf/' | xargs clang-format -i

clean:
	rm -rf $(BUILD)
