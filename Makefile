# Every target installs what it needs on a fresh Debian 12 machine (as root) and is a fast
# no-op when that is already done. Stamps live in .cache/ (git-ignored).
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Machine packages: the lab (nspawn, debootstrap, iproute2, nftables), ssh-keygen, openssl for
# independent certificate checks, zstd for the cached lab rootfs; etcd-server for the etcd store
# conformance tests; busybox-static, skopeo and docker-registry to build and serve test images
# without network; runc and the CNI plugins as the machine-side peers of the node runtime tests;
# vagrant to validate the Vagrantfile (no provider needed for that); dnsperf and unbound for
# bench/dns.py (the load generator and the peer server); haproxy for the ingress controller's
# tests and wrk for bench/ingress.py; QEMU (qemu-system-x86, qemu-img) and e2fsprogs (mkfs.ext4 -d)
# for the VM lab (berth lab up --vm; busybox-static is its initramfs).
APT_PACKAGES := systemd-container debootstrap iproute2 nftables openssh-client openssl zstd \
	ca-certificates etcd-server busybox-static skopeo docker-registry runc containernetworking-plugins \
	vagrant dnsperf unbound haproxy wrk qemu-system-x86 qemu-utils e2fsprogs
# Only for `make vm-test` (not `make test`): vagrant-libvirt, libvirt's daemons and dnsmasq for
# its DHCP (a Recommends, which --no-install-recommends would leave out).
VM_APT_PACKAGES := vagrant-libvirt libvirt-daemon-system dnsmasq-base
LAB_NAME ?= demo

.PHONY: help setup demo test lint typecheck unit lab-test lab-rootfs lab-rootfs-trixie lab-vm-image chaos vm-test vagrant-box bench clean demo-down docs
help:
	@echo "make demo   - boot a local lab and bring up a berth cluster on it"
	@echo "make test   - lint, type check and the whole test suite (lab tests included)"
	@echo "make chaos  - the chaos durability run on lab clusters (before each release; ~10 min)"
	@echo "make vm-test - berth on a QEMU VM lab host and on 2 vagrant-libvirt machines (slow under TCG)"
	@echo "make vagrant-box - build the vagrant-libvirt box from the VM lab's image"
	@echo "make bench  - run the benchmarks under bench/"
	@echo "make demo-down - tear the demo lab down (LAB_NAME=demo)"
	@echo "make docs   - regenerate docs/reference/ (spec and CLI) from the code"

.cache/apt.stamp: Makefile
	@mkdir -p .cache
	@n=$$(dpkg-query -W -f='$${Status}\n' $(APT_PACKAGES) 2>/dev/null | grep -c '^install ok installed$$' || true); \
	if [ "$$n" != "$(words $(APT_PACKAGES))" ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_PACKAGES); \
	fi
	@touch $@

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

.cache/venv.stamp: pyproject.toml | $(BIN)/python
	@mkdir -p .cache
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@

# kubectl 1.20.2 from Debian's kubernetes-client, extracted beside the tree (never installed: it
# would replace /usr/bin/kubectl). The API server tests drive it as well as /usr/bin/kubectl.
.cache/kubectl-1.20/usr/bin/kubectl: | .cache/apt.stamp
	@rm -rf .cache/kubectl-deb && mkdir -p .cache/kubectl-deb
	cd .cache/kubectl-deb && apt-get download kubernetes-client
	dpkg-deb -x .cache/kubectl-deb/kubernetes-client_*.deb .cache/kubectl-1.20
	@rm -rf .cache/kubectl-deb

setup: .cache/apt.stamp .cache/venv.stamp .cache/kubectl-1.20/usr/bin/kubectl

# The lab hosts' shared Debian rootfs: built once with debootstrap (~50 s), then cached under
# /var/cache/berth-lab keyed by its package list; a fast no-op when cached.
lab-rootfs: .cache/apt.stamp .cache/venv.stamp
	$(BIN)/berth lab rootfs

# The VM lab's base image over the bookworm rootfs (Debian's cloud kernel from the package
# archive, our initramfs, an ext4 disk; ~20 s), cached beside it: tests/vm/test_vm_smoke.py
# (part of `make test`) and `make vm-test` boot their VMs from it. The kernel and kmod/udev come
# from the machine's package lists: on a machine whose lists were never fetched, fetch them once.
lab-vm-image: lab-rootfs
	$(BIN)/berth lab rootfs --vm || { apt-get update -qq && $(BIN)/berth lab rootfs --vm; }

# Debian 13 hosts for the lab tests of Debian 13 (tests/lab/test_platforms.py, test_upgrade.py)
lab-rootfs-trixie: .cache/apt.stamp .cache/venv.stamp
	$(BIN)/berth lab rootfs --release trixie

# A 3-host lab, a berth cluster on it (apply ends with verify; the full report follows), then
# the nodes through kubectl. apply shows its compact progress (plain lines in CI logs) and draws
# its timeline to .cache/demo-timeline.svg; `berth apply -vv` shows every command and diff.
# The shipped berth is pinned to one commit for the whole recipe.
# The demo cluster runs real pod networks (runtime runc): while a lab is up this machine drops
# traffic to the pod and service CIDRs (blackhole routes the lab holds; see
# provisioner/lab/blackholes.py), so a stray packet to a pod or ClusterIP never leaves it.
DEMO_SPEC = $(BIN)/python -c 'from provisioner.lab import Lab; print(Lab("$(LAB_NAME)").spec_path)'

demo: setup lab-rootfs
	$(BIN)/berth lab up 3 --name $(LAB_NAME) --replace
	@spec=$$($(DEMO_SPEC)); \
	export BERTH_BUNDLE_SOURCE=$$(git rev-parse HEAD 2>/dev/null || echo worktree); \
	$(BIN)/berth apply -i $$spec --yes --timeline .cache/demo-timeline.svg && \
	$(BIN)/berth verify -i $$spec && \
	kubeconfig=$$($(BIN)/berth kubeconfig -i $$spec | head -1) && \
	echo && echo "kubectl --kubeconfig $$kubeconfig get nodes -o wide" && \
	kubectl --kubeconfig $$kubeconfig get nodes -o wide && \
	echo && echo "where the apply's time went: .cache/demo-timeline.svg (open it in a browser)"

demo-down: setup
	$(BIN)/berth lab down --name $(LAB_NAME)

# docs/reference/spec.md and cli.md are generated from the spec models and the CLI; `make test`
# fails (tests/docs/test_reference.py) when the committed copies are stale.
docs: setup
	$(BIN)/python -m provisioner.docsgen

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: setup
	$(BIN)/mypy provisioner berth tests bench

# The tests run on pytest-xdist workers, a test file at a time (--dist loadfile), longest files
# first (tests/conftest.py): each lab module keeps its one cluster on one worker, and independent
# lab modules run side by side on their own labs (they mostly wait on hosts). A lab module keeps
# about 2/3 of a core busy (its hosts and the operator side): 3 workers fill the 2-core CI
# machine without starving the tests that time their hosts.
TEST_WORKERS ?= 3
PYTEST_PARALLEL = -n $(TEST_WORKERS) --dist loadfile

test: lint typecheck lab-rootfs lab-rootfs-trixie lab-vm-image
	$(BIN)/pytest $(PYTEST_PARALLEL) --durations=40

lab-test: setup lab-rootfs lab-rootfs-trixie lab-vm-image
	$(BIN)/pytest $(PYTEST_PARALLEL) -m lab

# tests/vm: berth on QEMU VMs (own kernel: modules, sysctls, reboots, power cuts), under TCG here
# (/dev/kvm is a PVM-only KVM: a stock guest kernel hangs on it; see provisioner/lab/qemu.py).
# test_vm_smoke.py (1 VM: apply, a power cut, the same pod back, verify) is part of `make test`
# (started first; 5.7 min alone at load 2-11, 4.8 min beside test_e2e.py and
# test_cluster_workloads.py on 3 workers at load 1-16; its apply took 4.8 min at load 8-36). `make vm-test` runs the rest: test_vm_cluster.py (3 VMs: apply, a DaemonSet,
# a worker and the control-plane VM rebooted, a worker's power cut, destroy, lab down; 29 min at
# load 12-73: apply with verify 8 min, each fault + verify ~5 min, destroy 4 min) and
# test_vagrant.py, the real `vagrant up`/`destroy` (vagrant-libvirt) of 2 machines on the box
# `make vagrant-box` builds from the same image (18 min at load 7-69: up 8 min, from-vagrant,
# apply and verify 8 min). The control-plane VM (n1, cp1) has 2 vCPUs and
# 2 GiB, the workers 1 vCPU and 1 GiB. Run it before each release or after lab/install changes.
vm-test: setup lab-vm-image .cache/vm-apt.stamp
	$(BIN)/pytest -m vm tests/vm

.cache/vm-apt.stamp: Makefile | .cache/apt.stamp
	@n=$$(dpkg-query -W -f='$${Status}\n' $(VM_APT_PACKAGES) 2>/dev/null | grep -c '^install ok installed$$' || true); \
	if [ "$$n" != "$(words $(VM_APT_PACKAGES))" ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(VM_APT_PACKAGES); \
	fi
	@touch $@

# The Vagrant box (vagrant-libvirt) built from the VM lab's image; prints its path.
vagrant-box: setup lab-rootfs
	$(BIN)/berth lab box

# tests/chaos: power cuts, kill -9 and a partition under a full-speed writer on a SQLite and an
# etcd cluster. Too long for `make test` (see tests/chaos/conftest.py); run before each release.
chaos: setup lab-rootfs
	$(BIN)/pytest -m chaos tests/chaos

# pyinfra (the peer of bench/apply.py) gets its own venv: it pins python-dateutil<3, which the
# kubernetes client in the dev venv cannot use.
.cache/pyinfra-venv/bin/pyinfra:
	$(PYTHON) -m venv .cache/pyinfra-venv
	.cache/pyinfra-venv/bin/pip install -q 'pyinfra>=3.0'

bench: setup lab-rootfs .cache/pyinfra-venv/bin/pyinfra
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf .cache .mypy_cache .ruff_cache .pytest_cache build *.egg-info
