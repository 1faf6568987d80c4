#!/usr/bin/env python3
"""A tritonclient program written the way Triton's example clients are:
InferInput + set_data_from_numpy, InferRequestedOutput, infer, as_numpy.
It knows nothing of tritonshm; run it under the accelerator, unedited:

    python -m tritonshm.accelerate --stats examples/clients/simple_infer_client.py -u localhost:8000

Model: `simple` (INT32 INPUT0, INPUT1 [1, 16] -> OUTPUT0 = sum, OUTPUT1 =
difference), served by examples/pytriton_server.py and tests/triton_server.py.
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

    model_name = "simple"

    # Two inputs of 16 integers each, a batch of one.
    input0_data = np.expand_dims(np.arange(start=0, stop=16, dtype=np.int32), axis=0)
    input1_data = np.full(shape=(1, 16), fill_value=-1, dtype=np.int32)

    inputs = [
        client_module.InferInput("INPUT0", [1, 16], "INT32"),
        client_module.InferInput("INPUT1", [1, 16], "INT32"),
    ]
    inputs[0].set_data_from_numpy(input0_data)
    inputs[1].set_data_from_numpy(input1_data)

    outputs = [
        client_module.InferRequestedOutput("OUTPUT0"),
        client_module.InferRequestedOutput("OUTPUT1"),
    ]

    results = triton_client.infer(model_name=model_name, inputs=inputs, outputs=outputs)

    output0_data = results.as_numpy("OUTPUT0")
    output1_data = results.as_numpy("OUTPUT1")
    if output0_data is None or output1_data is None:
        print("error: an output is missing from the result")
        sys.exit(1)

    for i in range(16):
        print(f"{input0_data[0][i]} + {input1_data[0][i]} = {output0_data[0][i]}")
        print(f"{input0_data[0][i]} - {input1_data[0][i]} = {output1_data[0][i]}")
        if (input0_data[0][i] + input1_data[0][i]) != output0_data[0][i]:
            print("sync infer error: incorrect sum")
            sys.exit(1)
        if (input0_data[0][i] - input1_data[0][i]) != output1_data[0][i]:
            print("sync infer error: incorrect difference")
            sys.exit(1)

    # The result also describes each output as the server sent it.
    output0 = results.get_output("OUTPUT0")
    datatype = output0.datatype if FLAGS.protocol == "grpc" else output0["datatype"]
    shape = list(output0.shape) if FLAGS.protocol == "grpc" else output0["shape"]
    if datatype != "INT32" or shape != [1, 16]:
        print(f"error: OUTPUT0 described as {datatype} {shape}")
        sys.exit(1)

    triton_client.close()
    print("PASS: infer")
