"""Parses OTLP/HTTP JSON logs bodies strictly (see check-otlp.sh)."""

import sys

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
)


def main(paths):
    for path in paths:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        request = ExportLogsServiceRequest()
        try:
            # ignore_unknown_fields=False (the default): a misspelled or
            # invented field is an error, as is a value of the wrong type.
            json_format.Parse(text, request)
        except json_format.ParseError as e:
            print(f"otlp: {path}: invalid ExportLogsServiceRequest: {e}")
            return 1
        records = sum(
            len(scope.log_records)
            for resource in request.resource_logs
            for scope in resource.scope_logs
        )
        print(
            f"otlp: {path}: ok, {len(request.resource_logs)} resourceLogs, "
            f"{records} logRecords"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
