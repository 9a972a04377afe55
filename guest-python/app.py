"""The component's entry point: the `run` export of the `runner` world (see wit/ftl2.wit).

Everything the script may import must be imported here: componentize-py snapshots the
interpreter at build time, and only modules loaded during the build exist at run time.
"""

# The standard library scripts commonly use.
import abc, argparse, ast, base64, binascii, bisect, calendar, collections, collections.abc  # noqa: E401,F401
import configparser, contextlib, copy, csv, dataclasses, datetime, decimal, difflib, enum  # noqa: E401,F401
import errno, fnmatch, fractions, functools, getpass, glob, gzip, hashlib, heapq, hmac  # noqa: E401,F401
import html, inspect, io, ipaddress, itertools, json, keyword, locale, logging, math  # noqa: E401,F401
import operator, os, pathlib, platform, pprint, queue, random, re, secrets, shlex, shutil  # noqa: E401,F401
import socket, stat, statistics, string, struct, subprocess, sys, tempfile, textwrap, threading  # noqa: E401,F401
import time, traceback, types, typing, unicodedata, urllib.parse, uuid, warnings, weakref  # noqa: E401,F401
import zlib, zipfile, tarfile, string.templatelib  # noqa: E401,F401
import email.utils, html.parser, xml.etree.ElementTree  # noqa: E401,F401
import asyncio  # noqa: F401
import yaml  # noqa: F401
import jinja2  # noqa: F401

import ftl2  # noqa: F401
import ftl2.automation  # noqa: F401
import ftl2.exceptions  # noqa: F401
import ftl2.ftl_modules  # noqa: F401
import ftl2.policy  # noqa: F401
from ftl2 import _runner

import wit_world


class WitWorld(wit_world.WitWorld):
    """Implements the world's export."""

    def run(self, script_path: str, inventory_path: str, extravars_json: str) -> int:
        try:
            return _runner.main(script_path, inventory_path, extravars_json)
        except BaseException:  # an exception escaping the export would trap the instance
            import traceback as tb

            tb.print_exc()
            return 1
