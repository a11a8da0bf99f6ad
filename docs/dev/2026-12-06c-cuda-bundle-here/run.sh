# packaging/gpu-proof's flow on this CPU-only machine (no NVIDIA driver): the CUDA flavour built
# from the compiled tree of build/release (the wheels' nvcc, sm_90), in a clean venv with the GUI
set -u; cd /work/main
export PATH=/tmp/fakebin:$PATH WORK=/tmp/gpsim OUTDIR=/tmp/gpsim-out PY=python3 WHEELS=/tmp/r23-311/whl CUDA_ARCHS=90-real JOBS=2
export LLAMA_SRC=/work/main/build/release/src/llama_cpp_python-0.3.36 NVCC=/work/main/build/release/cuda-wheels/nvidia/cu13/bin/nvcc LLAMA_BUILD_DIR=/work/main/build/release/llama-build-cuda13
T0=$SECONDS
POLL_S=3000 packaging/gpu-proof build-bg; echo "build-bg rc=$? $((SECONDS-T0)) s"
for st in detect smoke nogpu sizes manifest nodriver-quick; do packaging/gpu-proof $st > /tmp/gpsim-$st.log 2>&1; echo "$st rc=$? $((SECONDS-T0)) s"; tail -3 /tmp/gpsim-$st.log; done
