# Ember developer entry points. Everything installs into $(VENV), which is reused when present.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# pip takes these two builds from the local disk; an unpinned `pip install timm` could pull another.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.ember-installed

# The shipped model: Stage 3 on the public data (never copied into the repository; $EMBER_DATA moves it), seeded.
DEFAULT_MODEL_OUT := outputs/default-model
DEFAULT_MODEL_TRAIN := --output_dir $(DEFAULT_MODEL_OUT) \
	--model_config embervlm-edge --stage3_robot_epochs 8 --batch_size 32 --learning_rate 2e-4 \
	--gradient_accumulation 1 --eval_steps 1000 --save_steps 1000 --seed 0 --wandb disabled
SHIPPED := ember_core/assets/default_model

.PHONY: install test demo clean default-model

install: $(STAMP)

# ember_msgs (ament_cmake + rosidl) is built with the ROS 2 build wheels of the `msgs` extra and the
# system's cmake and C++ compiler, and installed into $(VENV) (tools/build_ember_msgs.py).
$(STAMP): setup.py setup.cfg Makefile tools/build_ember_msgs.py ember_msgs/CMakeLists.txt ember_msgs/package.xml \
		$(wildcard ember_msgs/msg/*.msg ember_msgs/srv/*.srv)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet $(TORCH_PINS)
	$(PIP) install --quiet $(TORCH_PINS) -e '.[train,ros,msgs,dev,onnx]'
	$(PY) tools/build_ember_msgs.py > $(VENV)/ember_msgs-build.log 2>&1 || { tail -40 $(VENV)/ember_msgs-build.log; exit 1; }
	touch $(STAMP)

# pytest exits 5 when it collects no test; make treats any non-zero exit as failure.
test: install
	$(PY) -m pytest

demo: install
	$(VENV)/bin/ember robots validate
	$(VENV)/bin/ember robots list
	$(VENV)/bin/ember robots show underwater_robot
	$(VENV)/bin/ember model info
	$(VENV)/bin/ember select --task "Inspect the intake pipe of a flooded pump station for blockages"
	$(PY) tools/ros_demo.py

default-model: install
	$(VENV)/bin/ember train $(DEFAULT_MODEL_TRAIN)
	# Out-of-fold scores of the same recipe for the calibration (the explanation phase leaves robot scores as they are).
	$(VENV)/bin/ember train $(DEFAULT_MODEL_TRAIN) --kfold 5 --explanation_epochs 0 --output_dir $(DEFAULT_MODEL_OUT)/cv
	$(VENV)/bin/ember calibrate --model $(DEFAULT_MODEL_OUT)/stage3/best --out_of_fold $(DEFAULT_MODEL_OUT)/cv \
		--dev tests/data/novel_dev_tasks.jsonl --dev tests/data/snake_dev_tasks.jsonl@tests/data/robots_with_snake.yaml \
		--report $(DEFAULT_MODEL_OUT)/calibration
	$(PY) tools/ship_default_model.py $(DEFAULT_MODEL_OUT)/stage3/best
	$(VENV)/bin/ember eval --model $(SHIPPED) --split test --report $(DEFAULT_MODEL_OUT)/report
	$(VENV)/bin/ember eval --model $(SHIPPED) --data tests/data/novel_tasks.jsonl --split all --no-images \
		--report $(DEFAULT_MODEL_OUT)/report-novel
	$(VENV)/bin/ember eval --model $(SHIPPED) --data tests/data/snake_tasks.jsonl --split all --no-images \
		--robots tests/data/robots_with_snake.yaml --report $(DEFAULT_MODEL_OUT)/report-snake
	# The holdout report sets, written after every setting was chosen: large enough to measure calibration.
	$(VENV)/bin/ember eval --model $(SHIPPED) --data tests/data/novel_holdout_tasks.jsonl --split all --no-images \
		--report $(DEFAULT_MODEL_OUT)/report-novel-holdout
	$(VENV)/bin/ember eval --model $(SHIPPED) --data tests/data/snake_holdout_tasks.jsonl --split all --no-images \
		--robots tests/data/robots_with_snake.yaml --report $(DEFAULT_MODEL_OUT)/report-snake-holdout
	# The effect of the new robot on the others: the public test split and the novel sets with the snake in the fleet.
	$(VENV)/bin/ember eval --model $(SHIPPED) --split test --robots tests/data/robots_with_snake.yaml
	$(VENV)/bin/ember eval --model $(SHIPPED) --data tests/data/novel_tasks.jsonl --split all --no-images \
		--robots tests/data/robots_with_snake.yaml
	$(VENV)/bin/ember eval --model $(SHIPPED) --data tests/data/novel_holdout_tasks.jsonl --split all --no-images \
		--robots tests/data/robots_with_snake.yaml

clean:
	rm -rf $(VENV) build install log *.egg-info .pytest_cache

# All three stages on tiny generated data in the real formats (tools/make_smoke_data.py), under torchrun with
# 2 processes on the CPU (gloo): `--stage all` as the design's command runs it, a tiny model, one epoch each.
SMOKE_OUT := outputs/smoke
.PHONY: smoke
smoke: install
	rm -rf $(SMOKE_OUT)
	$(PY) tools/make_smoke_data.py $(SMOKE_OUT)/data
	OMP_NUM_THREADS=1 $(PY) -m torch.distributed.run --standalone --nproc_per_node=2 -m ember_train \
		--stage all --distributed --device cpu --mixed_precision bf16 --model_config tiny --output_dir $(SMOKE_OUT) \
		--stage1_data $(SMOKE_OUT)/data/stage1 --stage2_data $(SMOKE_OUT)/data/stage2 \
		--robot_data $(SMOKE_OUT)/data/robot_tasks.jsonl --stage1_epochs 1 --stage2_epochs 1 --stage3_robot_epochs 1 \
		--explanation_epochs 1 --batch_size 4 --gradient_accumulation 2 --log_steps 5 --eval_steps 5 --save_steps 5 \
		--wandb disabled
