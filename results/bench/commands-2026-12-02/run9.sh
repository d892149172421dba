#!/bin/bash
# Call 9: the packing curve of graphed study-shape jobs (256 x 128) after the one-chunk path.
export LD_LIBRARY_PATH=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib
cd .gpu/g1 && python3 -c "import lzma,sys;open('stuffed','wb').write(lzma.open('stuffed.xz').read())" && chmod +x stuffed
timeout 260 ./stuffed bench pack --case train-study-128 --jobs 1,2,4 --steps 20 --graph --mps --out $OUT/h200-pack-study-128-graph.json 2>&1 | grep -E "^pack|error" 
