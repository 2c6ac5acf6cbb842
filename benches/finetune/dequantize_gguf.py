"""Writes an all-F32 copy of a GGUF model: quantized tensors dequantized, metadata kept.

usage: python dequantize_gguf.py IN.gguf OUT.gguf   (needs `pip install gguf numpy`)

For the finetune loss benchmark: with F32 weights neither engine quantizes activations,
so candle's and llama.cpp's losses can be compared exactly.
"""
import sys
import numpy as np
import gguf
from gguf import GGUFReader, GGUFWriter, GGUFValueType
from gguf.quants import dequantize

src, dst = sys.argv[1], sys.argv[2]
r = GGUFReader(src)
arch = r.fields["general.architecture"].contents()
w = GGUFWriter(dst, arch)
for name, field in r.fields.items():
    if name.startswith("GGUF.") or name == "general.architecture":
        continue
    vtype = field.types[0]
    val = field.contents()
    if vtype == GGUFValueType.ARRAY:
        w.add_key_value(name, val, vtype, sub_type=field.types[-1])
    else:
        w.add_key_value(name, val, vtype)
for t in r.tensors:
    data = dequantize(t.data, t.tensor_type).astype(np.float32)
    shape = list(reversed([int(x) for x in t.shape]))
    w.add_tensor(t.name, data.reshape(shape), raw_dtype=gguf.GGMLQuantizationType.F32)
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
print("wrote", dst)
