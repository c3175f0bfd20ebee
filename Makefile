# Holdfast top-level targets. `make demo` and `make test` are all a newcomer
# needs; both install their Debian packages first (tools/scripts/setup.sh).

GO ?= go
GOFMT ?= $(shell $(GO) env GOROOT)/bin/gofmt
OUT := out
HOLDFAST := $(OUT)/bin/holdfast

export CGO_ENABLED := 0

.PHONY: all setup build test faults fuzz demo bench bench-store bench-pull bench-restore bench-scale clean image qemu

# HOLDFAST_ACCEL=auto|kvm|tcg picks the VMs' accelerator for make demo, make
# test, make qemu and make faults (default auto: a probe of this host's KVM,
# cached per boot, then TCG where KVM cannot run the guest). It reaches the
# tests and holdfast-image through the environment.
export HOLDFAST_ACCEL

# BOARD is the board `make image` and `make qemu` build for (boards/*.hcl).
BOARD ?= qemu-x86_64

all: build

## setup: install missing Debian packages and pinned tools (idempotent)
setup:
	bash tools/scripts/setup.sh

## build: build the host command into out/bin/holdfast
build:
	@mkdir -p $(OUT)/bin
	$(GO) build -o $(HOLDFAST) ./tools/holdfast

## test: go vet, gofmt check, then every test (the QEMU boot tests last, on their own)
test: setup
	$(GO) vet ./...
	@unformatted="$$($(GOFMT) -l $$(find . -name '*.go' -not -path './out/*' -not -path './.git/*'))"; \
	if [ -n "$$unformatted" ]; then \
		echo "gofmt: these files need formatting (run gofmt -w):"; \
		echo "$$unformatted"; \
		exit 1; \
	fi
	$(GO) test -count=1 -timeout 60m $$($(GO) list ./... | grep -v '/images')
	@# The VM tests run alone: a TCG guest starved by other test binaries
	@# on a 2-core machine stalls in early boot.
	$(GO) test -count=1 -timeout 60m -p 1 ./images/...

## faults: power cuts in QEMU: 50 SIGKILLs of the VM during pulls and the Sync to the second disk, a boot and the store's checks (verify, read-back, scrub of both disks) after each; table in out/powercuts.md (about two hours under TCG)
faults: setup
	HOLDFAST_POWERCUTS=50 HOLDFAST_POWERCUT_REPORT=$(OUT)/powercuts.md $(GO) test -count=1 -timeout 180m -run TestPowerCuts -v ./images/

# FUZZTIME is how long `make fuzz` runs each fuzz target.
FUZZTIME ?= 10m

## fuzz: run every Fuzz target in the repository for FUZZTIME each (default 10m), one after another; crashers land in the package's testdata/fuzz/
fuzz:
	@set -e; for f in $$(grep -rl --include='*_test.go' -E '^func Fuzz[A-Za-z0-9_]*\(f \*testing\.F\)' . | grep -v '^./out/' | sort); do \
		pkg=./$$(dirname $${f#./}); \
		for t in $$(sed -n -E 's/^func (Fuzz[A-Za-z0-9_]*)\(f \*testing\.F\).*/\1/p' $$f); do \
			echo "== $$t in $$pkg for $(FUZZTIME)"; \
			$(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

## demo: end-to-end run: the store, the kernel refusing root, an S3 pull surviving a wiped bucket, then the QEMU appliance configured over its serial line pulling its first snapshot (needs root)
demo: setup build
	HOLDFAST=$(CURDIR)/$(HOLDFAST) GO=$(GO) bash tools/scripts/demo.sh

## bench-store: holdfast put vs cp -r vs rclone copy on ~1 GiB (needs root)
bench-store: setup build
	HOLDFAST=$(CURDIR)/$(HOLDFAST) GO=$(GO) bash tools/scripts/bench-store.sh

## bench-pull: holdfast pull vs rclone copy of a ~1 GiB MinIO bucket (needs root)
bench-pull: setup build
	HOLDFAST=$(CURDIR)/$(HOLDFAST) GO=$(GO) bash tools/scripts/bench-pull.sh

## bench-restore: holdfast restore to MinIO vs rclone copy of the same ~1 GiB to MinIO (needs root)
bench-restore: setup build
	HOLDFAST=$(CURDIR)/$(HOLDFAST) GO=$(GO) bash tools/scripts/bench-restore.sh

## bench-scale: a mail archive: first the store-level run (SCALE_OBJECTS, default "100000 1000000", through the real pull code without S3), then a MinIO bucket of BENCH_SCALE_OBJECTS (default 1,000,000) maildir objects, built once and cached: pulls, ls, cat, prune and verify with time and peak RSS beside a bare listing (needs root; the first run uploads the bucket)
bench-scale: setup build
	GO=$(GO) bash tools/scripts/bench-scale-store.sh
	HOLDFAST=$(CURDIR)/$(HOLDFAST) GO=$(GO) bash tools/scripts/bench-scale.sh

## bench: every benchmark
bench: bench-store bench-pull bench-restore bench-scale

## image: build out/$(BOARD)/holdfast.img (GPT, ESP with UKIs in slots A/B, config partition) and print PCR 11
image: setup
	$(GO) run ./images/cmd/holdfast-image build -board $(BOARD) -out $(OUT)

## qemu: boot out/$(BOARD)/holdfast.img under OVMF with swtpm and two data disks; console on out/$(BOARD)/vm/serial.sock
qemu: image
	$(GO) run ./images/cmd/holdfast-image qemu -board $(BOARD) -out $(OUT)

clean:
	rm -rf $(OUT)
