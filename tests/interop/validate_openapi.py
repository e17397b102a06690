"""openapi-spec-validator checks Tessera's /openapi.json.

Usage: python3 validate_openapi.py URL
"""

import sys
from importlib.metadata import version

import requests
from openapi_spec_validator import validate


def main():
    spec = requests.get(sys.argv[1], timeout=10).json()
    assert spec["openapi"].startswith("3."), spec["openapi"]
    validate(spec)
    operations = sum(len(item) for item in spec["paths"].values())
    print(
        f"openapi-spec-validator {version('openapi-spec-validator')}: "
        f"OpenAPI {spec['openapi']} valid, {len(spec['paths'])} paths, {operations} operations"
    )


if __name__ == "__main__":
    main()
