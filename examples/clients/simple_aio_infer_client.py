#!/usr/bin/env python3
"""The asyncio clients (tritonclient.http.aio, tritonclient.grpc.aio), with
several requests awaited at once, as an asyncio service sends them. Run it
unedited under the accelerator:

    python -m tritonshm.accelerate --stats examples/clients/simple_aio_infer_client.py -u localhost:8000

Model: `simple` (INT32 INPUT0, INPUT1 [1, 16] -> sum, difference).
"""

import argparse
import asyncio
import sys

import numpy as np


async def one_request(client_module, triton_client, request):
    input0_data = np.expand_dims(np.arange(start=request, stop=request + 16, dtype=np.int32), axis=0)
    input1_data = np.full(shape=(1, 16), fill_value=2, dtype=np.int32)
    inputs = [
        client_module.InferInput("INPUT0", [1, 16], "INT32"),
        client_module.InferInput("INPUT1", [1, 16], "INT32"),
    ]
    inputs[0].set_data_from_numpy(input0_data)
    inputs[1].set_data_from_numpy(input1_data)
    outputs = [client_module.InferRequestedOutput("OUTPUT0"), client_module.InferRequestedOutput("OUTPUT1")]
    result = await triton_client.infer("simple", inputs, outputs=outputs)
    return np.array_equal(result.as_numpy("OUTPUT0"), input0_data + input1_data) and np.array_equal(
        result.as_numpy("OUTPUT1"), input0_data - input1_data
    )


async def main(FLAGS):
    if FLAGS.protocol == "grpc":
        import tritonclient.grpc.aio as client_module
    else:
        import tritonclient.http.aio as client_module
    url = FLAGS.url or ("localhost:8001" if FLAGS.protocol == "grpc" else "localhost:8000")
    triton_client = client_module.InferenceServerClient(url=url, verbose=FLAGS.verbose)
    try:
        checks = await asyncio.gather(*(one_request(client_module, triton_client, r) for r in range(FLAGS.requests)))
    finally:
        await triton_client.close()
    return all(checks)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("-v", "--verbose", action="store_true", default=False, help="Enable verbose output")
    parser.add_argument(
        "-u", "--url", type=str, default=None, help="Inference server URL (default localhost:8000, gRPC 8001)"
    )
    parser.add_argument("-i", "--protocol", type=str, default="http", choices=["http", "grpc"], help="Protocol to use")
    parser.add_argument("-n", "--requests", type=int, default=8, help="Requests awaited at once")
    FLAGS = parser.parse_args()

    if not asyncio.run(main(FLAGS)):
        print("aio infer error: incorrect result")
        sys.exit(1)
    print("PASS: aio infer")
