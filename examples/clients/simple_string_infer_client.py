#!/usr/bin/env python3
"""BYTES tensors (strings), the way Triton's string example clients send
them: an object array of bytes in, object arrays out. Run it unedited under
the accelerator:

    python -m tritonshm.accelerate --stats examples/clients/simple_string_infer_client.py -u localhost:8000

Model: `bytes_upper` (BYTES INPUT0 [1, n] -> OUTPUT0 = the strings upper-cased,
OUTPUT1 = their lengths, INT32), served by tests/triton_server.py.
"""

import argparse
import sys

import numpy as np

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("-v", "--verbose", action="store_true", default=False, help="Enable verbose output")
    parser.add_argument(
        "-u", "--url", type=str, default=None, help="Inference server URL (default localhost:8000, gRPC 8001)"
    )
    parser.add_argument("-i", "--protocol", type=str, default="http", choices=["http", "grpc"], help="Protocol to use")
    FLAGS = parser.parse_args()

    if FLAGS.protocol == "grpc":
        import tritonclient.grpc as client_module
    else:
        import tritonclient.http as client_module
    url = FLAGS.url or ("localhost:8001" if FLAGS.protocol == "grpc" else "localhost:8000")

    try:
        triton_client = client_module.InferenceServerClient(url=url, verbose=FLAGS.verbose)
    except Exception as e:
        print("client creation failed: " + str(e))
        sys.exit(1)

    words = ["triton", "shared", "memory", "", "Straße", "x" * 300]
    input0_data = np.array([[w.encode("utf-8") for w in words]], dtype=np.object_)

    inputs = [client_module.InferInput("INPUT0", list(input0_data.shape), "BYTES")]
    inputs[0].set_data_from_numpy(input0_data)
    outputs = [client_module.InferRequestedOutput("OUTPUT0"), client_module.InferRequestedOutput("OUTPUT1")]

    for attempt in range(2):  # the second request finds the outputs' sizes learned
        results = triton_client.infer("bytes_upper", inputs, outputs=outputs)
        output0_data = results.as_numpy("OUTPUT0")
        output1_data = results.as_numpy("OUTPUT1")
        for i, word in enumerate(input0_data[0]):
            if output0_data[0][i] != word.upper():
                print(f"string infer error: {output0_data[0][i]!r} is not {word.upper()!r}")
                sys.exit(1)
            if output1_data[0][i] != len(word):
                print(f"string infer error: length {output1_data[0][i]} of {word!r}")
                sys.exit(1)
        print(f"request {attempt}: {[bytes(b).decode() for b in output0_data[0][:3]]} ...")

    triton_client.close()
    print("PASS: string infer")
