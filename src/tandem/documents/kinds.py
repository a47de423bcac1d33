"""What a file looks like from its name and first bytes, without parsing it: the signatures
of binary formats we refuse, the extensions and names of code and configuration files.
Tables for `tandem.documents.parsed`; pure functions, no parsing library."""

from __future__ import annotations

# Extensions that name a binary format, with what to call it: they refuse an upload whose
# bytes are not at hand (with the bytes, the signature or the text decoder decides).
BINARY_EXTENSIONS = {
    **dict.fromkeys((".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"), "image"),
    **dict.fromkeys((".ico", ".heic", ".avif", ".psd"), "image"),
    **dict.fromkeys((".mp3", ".wav", ".flac", ".ogg", ".m4a", ".aac", ".opus"), "audio"),
    **dict.fromkeys((".mp4", ".mov", ".avi", ".mkv", ".webm", ".wmv"), "video"),
    **dict.fromkeys((".zip", ".gz", ".tgz", ".bz2", ".xz", ".zst", ".7z", ".rar"), "archive"),
    **dict.fromkeys((".tar", ".jar", ".war", ".whl", ".apk", ".iso", ".dmg"), "archive"),
    **dict.fromkeys((".exe", ".dll", ".so", ".dylib", ".o"), "executable"),
    **dict.fromkeys((".class", ".pyc", ".pyo", ".wasm"), "compiled code"),
    **dict.fromkeys((".doc", ".xls", ".ppt", ".msg"), "legacy Microsoft Office file"),
    **dict.fromkeys((".sqlite", ".woff", ".woff2", ".ttf", ".otf"), "binary data"),
}

# Declared types of media and archives (consulted only when no bytes are at hand).
BINARY_DECLARED_PREFIXES = ("image/", "audio/", "video/", "font/", "application/zip")

_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG image"),
    (b"\xff\xd8\xff", "JPEG image"),
    (b"GIF87a", "GIF image"),
    (b"GIF89a", "GIF image"),
    (b"II*\x00", "TIFF image"),
    (b"MM\x00*", "TIFF image"),
    (b"8BPS", "Photoshop image"),
    (b"\x00\x00\x01\x00", "icon"),
    (b"PK\x03\x04", "ZIP archive"),
    (b"PK\x05\x06", "ZIP archive"),
    (b"PK\x07\x08", "ZIP archive"),
    (b"\x1f\x8b", "gzip archive"),
    (b"\xfd7zXZ\x00", "xz archive"),
    (b"\x28\xb5\x2f\xfd", "zstd archive"),
    (b"7z\xbc\xaf\x27\x1c", "7-Zip archive"),
    (b"Rar!\x1a\x07", "RAR archive"),
    (b"\x7fELF", "ELF executable"),
    (b"\xfe\xed\xfa\xce", "Mach-O executable"),
    (b"\xfe\xed\xfa\xcf", "Mach-O executable"),
    (b"\xce\xfa\xed\xfe", "Mach-O executable"),
    (b"\xcf\xfa\xed\xfe", "Mach-O executable"),
    (b"\xca\xfe\xba\xbe", "Java class or Mach-O executable"),
    (b"\x00asm", "WebAssembly module"),
    (b"SQLite format 3\x00", "SQLite database"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "legacy Microsoft Office file"),
    (b"OggS", "Ogg audio"),
    (b"fLaC", "FLAC audio"),
    (b"\x1a\x45\xdf\xa3", "Matroska video"),
    (b"wOFF", "web font"),
    (b"wOF2", "web font"),
    (b"OTTO", "font"),
)
_RIFF_KINDS = {b"WEBP": "WebP image", b"WAVE": "WAV audio", b"AVI ": "AVI video"}


def binary_signature(head: bytes) -> str | None:
    """What binary format `head` (a file's first bytes) starts with, if a known one."""
    for magic, what in _SIGNATURES:
        if head.startswith(magic):
            return what
    if head.startswith(b"RIFF") and head[8:12] in _RIFF_KINDS:
        return _RIFF_KINDS[head[8:12]]
    if head[4:8] == b"ftyp":
        return "MP4 or QuickTime video"
    if head.startswith(b"ID3") and head[3:4] in (b"\x02", b"\x03", b"\x04"):
        return "MP3 audio"
    if head.startswith(b"BZh") and head[4:10] == b"1AY&SY":
        return "bzip2 archive"
    if head.startswith(b"BM") and head[6:10] == b"\x00\x00\x00\x00":
        return "BMP image"
    # "MZ" also starts words; a DOS/Windows header has NUL bytes right after it.
    if head.startswith(b"MZ") and b"\x00" in head[2:64]:
        return "Windows executable"
    if head[257:262] == b"ustar":
        return "tar archive"
    return None


# Code and configuration: text whose line breaks and indentation carry meaning.
CODE_EXTENSIONS = {
    **dict.fromkeys((".py", ".pyi", ".pyw"), "python"),
    **dict.fromkeys((".c", ".h"), "c"),
    **dict.fromkeys((".cc", ".cpp", ".cxx", ".hpp", ".hh", ".hxx"), "cpp"),
    **dict.fromkeys((".js", ".mjs", ".cjs", ".jsx"), "javascript"),
    **dict.fromkeys((".ts", ".tsx", ".mts", ".cts"), "typescript"),
    **dict.fromkeys((".sh", ".bash", ".zsh", ".ksh", ".fish"), "shell"),
    **dict.fromkeys((".yaml", ".yml"), "yaml"),
    **dict.fromkeys((".ini", ".cfg", ".conf", ".cnf", ".editorconfig"), "ini"),
    **dict.fromkeys((".xml", ".xsd", ".xsl", ".svg", ".plist", ".csproj", ".pom"), "xml"),
    **dict.fromkeys((".css", ".scss", ".sass", ".less"), "css"),
    **dict.fromkeys((".ex", ".exs"), "elixir"),
    **dict.fromkeys((".clj", ".cljs", ".edn"), "clojure"),
    **dict.fromkeys((".diff", ".patch"), "diff"),
    **dict.fromkeys((".mk", ".mak"), "make"),
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".kt": "kotlin",
    ".kts": "kotlin",
    ".scala": "scala",
    ".groovy": "groovy",
    ".gradle": "groovy",
    ".cs": "csharp",
    ".fs": "fsharp",
    ".swift": "swift",
    ".m": "objective-c",
    ".rb": "ruby",
    ".php": "php",
    ".pl": "perl",
    ".pm": "perl",
    ".lua": "lua",
    ".r": "r",
    ".jl": "julia",
    ".dart": "dart",
    ".erl": "erlang",
    ".hs": "haskell",
    ".ml": "ocaml",
    ".zig": "zig",
    ".nim": "nim",
    ".vue": "vue",
    ".svelte": "svelte",
    ".ps1": "powershell",
    ".bat": "batch",
    ".cmd": "batch",
    ".sql": "sql",
    ".toml": "toml",
    ".properties": "properties",
    ".env": "dotenv",
    ".proto": "protobuf",
    ".graphql": "graphql",
    ".tf": "terraform",
    ".hcl": "hcl",
    ".nix": "nix",
    ".cmake": "cmake",
    ".dockerfile": "dockerfile",
    ".csv": "csv",
    ".tsv": "tsv",
    ".tex": "latex",
    ".vim": "vim",
    ".el": "elisp",
}
# Files known by their whole name.
CODE_NAMES = {
    **dict.fromkeys(("makefile", "gnumakefile"), "make"),
    **dict.fromkeys(("dockerfile", "containerfile"), "dockerfile"),
    **dict.fromkeys(("gemfile", "rakefile", "vagrantfile"), "ruby"),
    **dict.fromkeys((".bashrc", ".bash_profile", ".profile", ".zshrc"), "shell"),
    **dict.fromkeys((".gitignore", ".dockerignore", ".gitattributes"), "gitignore"),
    "cmakelists.txt": "cmake",
    "jenkinsfile": "groovy",
    "go.mod": "go",
    "procfile": "procfile",
}
# Declared types of code and configuration that clients send.
CODE_DECLARED = {
    "text/x-python": "python",
    "text/x-c": "c",
    "text/x-shellscript": "shell",
    "application/x-sh": "shell",
    "application/javascript": "javascript",
    "text/javascript": "javascript",
    "application/x-yaml": "yaml",
    "application/yaml": "yaml",
    "text/yaml": "yaml",
    "application/toml": "toml",
    "application/xml": "xml",
    "text/xml": "xml",
    "image/svg+xml": "xml",
    "text/csv": "csv",
    "text/css": "css",
    "application/sql": "sql",
}
_INTERPRETERS = {
    **dict.fromkeys(("sh", "bash", "zsh", "dash", "ksh"), "shell"),
    **dict.fromkeys(("python", "python3", "python2"), "python"),
    **dict.fromkeys(("node", "deno", "bun"), "javascript"),
    "perl": "perl",
    "ruby": "ruby",
    "php": "php",
}


def shebang_language(head: bytes) -> str | None:
    """The language a "#!" first line runs ("#!/usr/bin/env python3" -> python)."""
    if not head.startswith(b"#!"):
        return None
    words = head[2:200].split(b"\n", 1)[0].decode("ascii", "replace").split()
    if not words:
        return None
    program = words[0].rsplit("/", 1)[-1]
    if program == "env" and len(words) > 1:
        program = words[-1] if words[1].startswith("-") else words[1]
    return _INTERPRETERS.get(program, "script")
