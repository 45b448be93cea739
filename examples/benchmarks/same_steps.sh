#!/usr/bin/env bash
# The original configurations' runs (example scripts, float64, fixed epochs, per-step records), for
# comparing two source trees step by step (examples/benchmarks/same_steps_compare.py):
#   bash examples/benchmarks/same_steps.sh SRC_ROOT OUT_ROOT DATASETS
# SRC_ROOT: a checkout (for one whose sgn/models is missing: ln -s ../models SRC_ROOT/sgn/models).
set -u
SRC=$1; OUT=$2; D=$3
PY=${PYTHON:-python}
export PYTHONPATH=$SRC OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
C="--floatX float64 --eval_every 0 --per_step --diagnostics --overwrite --verbose 0 --seed 3"
run() { name=$1; shift; $PY $SRC/examples/"$@" $C --out $OUT/$name > $OUT/$name.log 2>&1 || echo "FAIL $name"; }
mkdir -p $OUT
run sgn_tr_ls mlp.py --dataset boston --data_dir $D/boston --solver SGN --TR True --LS True --cg_max_iter 5 --epochs 4 --batch_size 64
run sgn_warmup mlp.py --dataset boston --data_dir $D/boston --solver SGN --cg_min_iter 2 --cg_max_iter 6 --K_cg 5 --epochs 4 --batch_size 64
run sgn_prec_beta mlp.py --dataset sine --solver SGN --cg_prec True --beta 0.9 --cg_max_iter 4 --epochs 2 --batch_size 100
run sgn_sched mlp.py --dataset sine --solver SGN --TR False --rho_schedule cos --K 20 --cg_max_iter 3 --epochs 2 --batch_size 100
run sgn_trratio mlp.py --dataset boston --data_dir $D/boston --solver SGN --TR True --LS True --TR_ratio accepted --cg_max_iter 4 --epochs 3 --batch_size 64 --weight_decay 1e-3
run sgd_mom mlp.py --dataset boston --data_dir $D/boston --solver SGD --mom 0.9 --scheduler cos --lr 0.01 --lr_final 0.001 --K 20 --epochs 4 --batch_size 64
run sgd_step mlp.py --dataset sine --solver SGD --mom 0.5 --scheduler step --lr 0.05 --lr_final 0.0001 --step 5 --r 0.5 --epochs 2 --batch_size 100
run adam mlp.py --dataset boston --data_dir $D/boston --solver Adam --lr 0.003 --epochs 4 --batch_size 64
run sgn_mnist mlp.py --dataset mnist --data_dir $D/mnist --layers 20 20 --solver SGN --cg_max_iter 3 --epochs 1 --batch_size 1000
run sgd_mnist mlp.py --dataset mnist --data_dir $D/mnist --layers 20 20 --solver SGD --mom 0.9 --lr 0.05 --epochs 1 --batch_size 1000
run sgn_lenet conv_net.py --dataset fashion --data_dir $D/fashion_mnist --architecture architecture_1 --solver SGN --cg_max_iter 5 --epochs 1 --batch_size 1000
run adam_lenet conv_net.py --dataset fashion --data_dir $D/fashion_mnist --architecture architecture_1 --solver Adam --lr 0.001 --epochs 1 --batch_size 1000
echo done
