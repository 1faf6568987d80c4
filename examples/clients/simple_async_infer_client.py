#!/usr/bin/env python3
"""Asynchronous requests as Triton's example clients send them: HTTP's
async_infer returns a request whose get_result() waits for the response;
gRPC's calls a callback. Run it unedited under the accelerator:

    python -m tritonshm.accelerate --stats examples/clients/simple_async_infer_client.py -i grpc -u localhost:8001

Model: `simple` (INT32 INPUT0, INPUT1 [1, 16] -> sum, difference).
"""

import argparse
import queue
import sys
from functools import partial

import numpy as np


def callback(user_data, result, error):
    if error:
        user_data.put(error)
    else:
        user_data.put(result)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("-v", "--verbose", action="store_true", default=False, help="Enable verbose output")
    parser.add_argument(
        "-u", "--url", type=str, default=None, help="Inference server URL (default localhost:8000, gRPC 8001)"
    )
    parser.add_argument("-i", "--protocol", type=str, default="http", choices=["http", "grpc"], help="Protocol to use")
    parser.add_argument("-n", "--requests", type=int, default=8, help="Requests in flight at once")
    FLAGS = parser.parse_args()

    if FLAGS.protocol == "grpc":
        import tritonclient.grpc as client_module
    else:
        import tritonclient.http as client_module
    url = FLAGS.url or ("localhost:8001" if FLAGS.protocol == "grpc" else "localhost:8000")

    try:
        if FLAGS.protocol == "http":
            triton_client = client_module.InferenceServerClient(
                url=url, verbose=FLAGS.verbose, concurrency=FLAGS.requests
            )
        else:
            triton_client = client_module.InferenceServerClient(url=url, verbose=FLAGS.verbose)
    except Exception as e:
        print("client creation failed: " + str(e))
        sys.exit(1)

    model_name = "simple"
    sent = []
    user_data = queue.Queue()
    for request in range(FLAGS.requests):
        input0_data = np.expand_dims(np.arange(start=request, stop=request + 16, dtype=np.int32), axis=0)
        input1_data = np.full(shape=(1, 16), fill_value=request, dtype=np.int32)
        inputs = [
            client_module.InferInput("INPUT0", [1, 16], "INT32"),
            client_module.InferInput("INPUT1", [1, 16], "INT32"),
        ]
        inputs[0].set_data_from_numpy(input0_data)
        inputs[1].set_data_from_numpy(input1_data)
        outputs = [client_module.InferRequestedOutput("OUTPUT0"), client_module.InferRequestedOutput("OUTPUT1")]
        if FLAGS.protocol == "http":
            handle = triton_client.async_infer(model_name, inputs, outputs=outputs, request_id=str(request))
        else:
            handle = None
            triton_client.async_infer(
                model_name, inputs, partial(callback, user_data), outputs=outputs, request_id=str(request)
            )
        sent.append((handle, input0_data, input1_data))

    results = {}
    for handle, _, _ in sent:
        if handle is not None:
            result = handle.get_result()
        else:
            result = user_data.get(timeout=60)
            if isinstance(result, Exception):
                print("async infer error: " + str(result))
                sys.exit(1)
        response = result.get_response()
        request_id = response.id if FLAGS.protocol == "grpc" else response["id"]
        results[int(request_id)] = result

    for request, (_, input0_data, input1_data) in enumerate(sent):
        result = results[request]
        if not np.array_equal(result.as_numpy("OUTPUT0"), input0_data + input1_data):
            print(f"async infer error: incorrect sum for request {request}")
            sys.exit(1)
        if not np.array_equal(result.as_numpy("OUTPUT1"), input0_data - input1_data):
            print(f"async infer error: incorrect difference for request {request}")
            sys.exit(1)

    triton_client.close()
    print("PASS: async infer")
