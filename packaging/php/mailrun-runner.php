<?php
/*
 * mailrun runner for PHP: ONE file to upload into a PHP-enabled web folder.
 *
 * It plays the runner's whole part of the mailrun contract (protocol/, docs/signing.md):
 * the endpoint (JobRunnerReady, JobRunnerConfigUpdate; HMAC-signed, verified, replay
 * checked, with runner-cgi's faults), the delivery cycle (JobRunRequest carrying pending
 * results, spool, deliver over SMTP, journal each outcome, repeat) and the setup page.
 * Plain PHP 8.1+ with openssl, libxml (XMLReader), hash, json and streams: no php-soap, no
 * Composer, no exec, no native code. docs/runner.md, "Which runner do I use?".
 *
 * Upload it, open its URL once: the first request makes the private state folder and
 * shows a one-time setup token and form. Then register the URL at the dispatcher. A
 * JobRunnerReady is answered at once and the delivery cycle runs in the same request after
 * the answer went out, so no cron is needed; where cron exists the crontab line is
 *   * * * * * php /path/to/mailrun-runner.php cycle --max-seconds 55
 */

declare(strict_types=1);

const MR_VERSION = '0.1.0';
/** What this runner reports as softwareVersion: the Rust runner's version, marked PHP. */
const MR_SOFTWARE_VERSION = MR_VERSION . '-php';
const MR_NS = 'urn:mailrun:soap:v1';
const MR_SOAP_NS = 'http://schemas.xmlsoap.org/soap/envelope/';
const MR_ACTION_PREFIX = 'urn:mailrun:soap:v1#';
const MR_WINDOW_SECONDS = 300;
const MR_NONCE_TTL = 600;
/** runner-cgi's request limit (protocol::limits::RUNNER_MAX_REQUEST_BYTES). */
const MR_MAX_REQUEST_BYTES = 1048576;
const MR_MAX_RESULTS_PER_REQUEST = 1000;
const MR_MAX_HELD = 1000;
const MR_RECEIVED_TTL = 3600;
const MR_CYCLE_LOG_MAX = 1048576;
/** Parse limits, as protocol::limits::Limits::REQUEST and ::RESPONSE. */
const MR_LIMITS_REQUEST = ['bytes' => 8388608, 'depth' => 32, 'elements' => 200000, 'attributes' => 32, 'text' => 65536];
const MR_LIMITS_RESPONSE = ['bytes' => 134217728, 'depth' => 32, 'elements' => 2000000, 'attributes' => 32, 'text' => 67108864];

const MR_EXIT_OK = 0;
const MR_EXIT_NO_WORK = 3;
const MR_EXIT_USAGE = 64;
const MR_EXIT_DATA = 65;
const MR_EXIT_UNAVAILABLE = 69;
const MR_EXIT_INTERNAL = 70;
const MR_EXIT_TEMPFAIL = 75;
const MR_EXIT_CONFIG = 78;

/** A refused request: the SOAP fault reason and message (never a secret). */
final class MrFault extends Exception
{
    public function __construct(public string $reason, string $message)
    {
        parent::__construct($message);
    }

    public function isServer(): bool
    {
        return $this->reason === 'Unavailable' || $this->reason === 'Internal';
    }
}

/** A command failure with its exit code (the Rust runner's table). */
final class MrExit extends Exception
{
    public function __construct(public int $exitCode, string $message)
    {
        parent::__construct($message);
    }
}

// --------------------------------------------------------------------------------------
// Small helpers

function mr_now(): int
{
    return time();
}

/** Rust's `{:?}` of a string, clipped to 64 characters: for values echoed in faults. */
function mr_quote(string $s, int $max = 64): string
{
    $chars = preg_split('//u', $s, -1, PREG_SPLIT_NO_EMPTY);
    if ($chars === false) {
        $chars = str_split($s);
    }
    $clipped = count($chars) > $max;
    $out = '"';
    foreach (array_slice($chars, 0, $max) as $c) {
        $out .= match ($c) {
            '"' => '\\"', '\\' => '\\\\', "\n" => '\\n', "\r" => '\\r', "\t" => '\\t',
            default => (strlen($c) === 1 && ord($c) < 0x20) ? sprintf('\\u{%x}', ord($c)) : $c,
        };
    }
    return $out . ($clipped ? '…' : '') . '"';
}

function mr_clip(string $s, int $max = 40): string
{
    $chars = preg_split('//u', $s, -1, PREG_SPLIT_NO_EMPTY) ?: [];
    return count($chars) > $max ? implode('', array_slice($chars, 0, $max)) . '…' : $s;
}

function mr_char_count(string $s): int
{
    return preg_match_all('/./su', $s);
}

function mr_is_loopback_host(string $host): bool
{
    $h = strtolower(trim($host, '[]'));
    if ($h === 'localhost' || $h === '::1') {
        return true;
    }
    if (filter_var($h, FILTER_VALIDATE_IP, FILTER_FLAG_IPV4) !== false) {
        return str_starts_with($h, '127.');
    }
    if (str_starts_with($h, '::ffff:')) {
        return str_starts_with(substr($h, 7), '127.');
    }
    return false;
}

function mr_rfc3339(float $t): string
{
    $sec = (int) floor($t);
    $ms = (int) round(($t - $sec) * 1000);
    if ($ms >= 1000) {
        $sec++;
        $ms = 0;
    }
    return gmdate('Y-m-d\TH:i:s', $sec) . ($ms ? sprintf('.%03d', $ms) : '') . 'Z';
}

function mr_log(string $message): void
{
    // The web server's error log (or stderr under the CLI); never carries secrets.
    if (PHP_SAPI === 'cli') {
        fwrite(STDERR, "mailrun-runner: $message\n");
    } else {
        error_log("mailrun-runner: $message");
    }
}

// --------------------------------------------------------------------------------------
// Files: every file written whole is temp + fsync + rename + fsync of the folder; 0600.

function mr_write_atomic(string $path, string $data): void
{
    $dir = dirname($path);
    $tmp = $dir . '/.' . basename($path) . '.tmp' . getmypid() . bin2hex(random_bytes(4));
    $old = umask(077);
    try {
        $fh = @fopen($tmp, 'xb');
        if ($fh === false) {
            throw new MrExit(MR_EXIT_TEMPFAIL, "cannot write $path: " . mr_last_error());
        }
        @chmod($tmp, 0600);
        $ok = @fwrite($fh, $data) === strlen($data) && @fflush($fh) && mr_fsync($fh);
        fclose($fh);
        if (!$ok || !@rename($tmp, $path)) {
            $why = mr_last_error();
            @unlink($tmp);
            throw new MrExit(MR_EXIT_TEMPFAIL, "cannot write $path (disk full?): $why");
        }
        mr_fsync_dir($dir);
    } finally {
        umask($old);
    }
}

/** fsync(2) of an open file (PHP 8.1+); true when it is on disk. */
function mr_fsync($fh): bool
{
    return function_exists('fsync') ? @fsync($fh) : @fflush($fh);
}

function mr_fsync_dir(string $dir): void
{
    $dh = @fopen($dir, 'r');
    if ($dh !== false) {
        mr_fsync($dh);
        fclose($dh);
    }
}

function mr_mkdir(string $dir): void
{
    if (is_dir($dir)) {
        return;
    }
    $old = umask(077);
    try {
        if (!@mkdir($dir, 0700, true) && !is_dir($dir)) {
            throw new MrExit(MR_EXIT_TEMPFAIL, "cannot create $dir: " . mr_last_error());
        }
    } finally {
        umask($old);
    }
}

function mr_last_error(): string
{
    $e = error_get_last();
    return $e ? preg_replace('/^\w+\(\S*\): /', '', $e['message']) : 'unknown error';
}

// --------------------------------------------------------------------------------------
// The state folder (docs/runner.md, "The PHP runner")

/** Real path of `$path` or of its nearest existing parent joined with the rest. */
function mr_real(string $path): string
{
    $rest = '';
    while (!file_exists($path) && $path !== dirname($path)) {
        $rest = '/' . basename($path) . $rest;
        $path = dirname($path);
    }
    $r = realpath($path);
    return rtrim($r === false ? $path : $r, '/') . $rest;
}

function mr_is_below(string $path, string $root): bool
{
    $root = rtrim($root, '/');
    return $root !== '' && ($path === $root || str_starts_with($path . '/', $root . '/'));
}

/** Below DOCUMENT_ROOT or below the folder holding this file: reachable over HTTP. */
function mr_inside_web(string $path): bool
{
    $real = mr_real($path);
    $docroot = $_SERVER['DOCUMENT_ROOT'] ?? '';
    if ($docroot !== '' && mr_is_below($real, mr_real($docroot))) {
        return true;
    }
    return mr_is_below($real, mr_real(__DIR__));
}

/**
 * Where the state goes, the first that applies: MAILRUN_RUNNER_DIR; an existing folder
 * from an earlier run; `mailrun-runner-php` beside the upload folder when that is
 * writable and outside the web root; else `.mailrun-runner-php` inside it, fenced off by
 * `.htaccess` (and refused when the server does not honour it).
 */
function mr_state_dir(?string $given = null): string
{
    if ($given !== null && $given !== '') {
        return rtrim($given, '/');
    }
    foreach ([getenv('MAILRUN_RUNNER_DIR'), $_SERVER['MAILRUN_RUNNER_DIR'] ?? false] as $env) {
        if (is_string($env) && $env !== '') {
            return rtrim($env, '/');
        }
    }
    $outside = dirname(__DIR__) . '/mailrun-runner-php';
    $inside = __DIR__ . '/.mailrun-runner-php';
    if (is_dir($outside)) {
        return $outside;
    }
    if (is_dir($inside)) {
        return $inside;
    }
    $home = getenv('HOME');
    if (is_string($home) && $home !== '' && $home !== '/' && is_writable($home) && !mr_inside_web("$home/mailrun-runner-php")) {
        return "$home/mailrun-runner-php";
    }
    if (is_writable(dirname(__DIR__)) && !mr_inside_web($outside)) {
        return $outside;
    }
    return $inside;
}

/** Creates the state folder; inside the web root it gets an .htaccess denying access. */
function mr_create_state(string $dir): void
{
    mr_mkdir($dir);
    foreach (['spool', 'outbox', 'nonces'] as $sub) {
        mr_mkdir("$dir/$sub");
    }
    if (mr_inside_web($dir) && !is_file("$dir/.htaccess")) {
        $rules = "# mailrun runner state: never served\nRequire all denied\n<IfModule !mod_authz_core.c>\nDeny from all\n</IfModule>\n";
        if (@file_put_contents("$dir/.htaccess", $rules) === false) {
            throw new MrExit(MR_EXIT_TEMPFAIL, "cannot write $dir/.htaccess");
        }
        @chmod("$dir/.htaccess", 0644);
    }
}

// --------------------------------------------------------------------------------------
// Configuration: runner.json (0600)

function mr_default_settings(): array
{
    return [
        'version' => 0,
        'batch_size' => 50,
        'send_rate_per_second' => 0.0,
        'smtp_connect_timeout_seconds' => 30,
        'smtp_command_timeout_seconds' => 300,
        'smtp_data_timeout_seconds' => 600,
        'poll_interval_seconds' => 60,
        'lease_safety_margin_seconds' => 60,
        'max_sessions' => 100,
        'max_sessions_per_account' => 20,
        'software' => null,
        'reply_policy' => null,
    ];
}

/** Loads runner.json; MrExit(78) when missing, invalid or readable by others. */
function mr_load_config(string $dir): array
{
    $path = "$dir/runner.json";
    clearstatcache(true, $path);
    if (!is_file($path)) {
        throw new MrExit(MR_EXIT_CONFIG, "$path is missing: set the runner up first");
    }
    $mode = fileperms($path) & 0777;
    if ($mode & 0077) {
        throw new MrExit(MR_EXIT_CONFIG, sprintf('%s is readable by others (mode %o): chmod 600 it', $path, $mode));
    }
    $config = json_decode((string) @file_get_contents($path), true);
    if (!is_array($config) || !is_string($config['runner_id'] ?? null) || !is_string($config['key'] ?? null)
        || !preg_match('/^[0-9a-fA-F]{64}$/', $config['key']) || !is_string($config['key_id'] ?? null)
        || !is_string($config['dispatcher_url'] ?? null)) {
        throw new MrExit(MR_EXIT_CONFIG, "$path is not a valid runner configuration");
    }
    $config['settings'] = array_merge(mr_default_settings(), is_array($config['settings'] ?? null) ? $config['settings'] : []);
    $config += ['enabled' => true, 'allow_plain_http' => false, 'previous_key_id' => null, 'previous_key' => null, 'smtp_ca_file' => null];
    return $config;
}

function mr_save_config(string $dir, array $config): void
{
    mr_write_atomic("$dir/runner.json", json_encode($config, JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES) . "\n");
}

/** The keys accepted inbound: [key_id => [secret, ...]]; current first. */
function mr_accepted_keys(array $config): array
{
    $keys = [[$config['key_id'], hex2bin(strtolower($config['key']))]];
    if (is_string($config['previous_key_id']) && is_string($config['previous_key'])
        && preg_match('/^[0-9a-fA-F]{64}$/', $config['previous_key'])) {
        $keys[] = [$config['previous_key_id'], hex2bin(strtolower($config['previous_key']))];
    }
    return $keys;
}

/** Plain http only to loopback unless allowed (runner::config::validate_url). */
function mr_check_url(string $what, string $url, bool $allowPlain): ?string
{
    $parts = parse_url($url);
    if (!is_array($parts) || !isset($parts['scheme'], $parts['host']) || preg_match('/\s/', $url)) {
        return "$what " . mr_quote($url) . ' is not an http(s) URL';
    }
    $scheme = strtolower($parts['scheme']);
    if ($scheme === 'https') {
        return null;
    }
    if ($scheme !== 'http') {
        return "$what " . mr_quote($url) . ' is not an http(s) URL';
    }
    if (!mr_is_loopback_host($parts['host']) && !$allowPlain) {
        return "$what " . mr_quote($url) . ' is plain http to a non-loopback host: use https, or opt in with allow_plain_http';
    }
    return null;
}

// --------------------------------------------------------------------------------------
// Signing (docs/signing.md)

function mr_string_to_sign(string $method, string $path, string $action, int $timestamp, string $nonce, string $body, ?string $requestNonce = null): string
{
    $lines = ['MAILRUN-HMAC-SHA256', strtoupper($method), $path, mr_unquote($action), (string) $timestamp, $nonce, hash('sha256', $body)];
    if ($requestNonce !== null) {
        $lines[] = $requestNonce;
    }
    return implode("\n", $lines);
}

function mr_unquote(string $s): string
{
    $s = trim($s);
    return (strlen($s) >= 2 && $s[0] === '"' && $s[-1] === '"') ? substr($s, 1, -1) : $s;
}

function mr_new_nonce(): string
{
    return bin2hex(random_bytes(16));
}

/** The four signature headers over `$text`. */
function mr_signature_headers(string $keyId, string $secret, string $text, int $timestamp, string $nonce): array
{
    return [
        'X-Mailrun-Key-Id' => $keyId,
        'X-Mailrun-Timestamp' => (string) $timestamp,
        'X-Mailrun-Nonce' => $nonce,
        'X-Mailrun-Signature' => hash_hmac('sha256', $text, $secret),
    ];
}

/**
 * Parses the signature headers (`$get(name)` gives a header or null) as
 * sign::Signature::from_headers; throws MrFault MissingSignature / BadSignature.
 */
function mr_parse_signature(callable $get): array
{
    $names = ['X-Mailrun-Key-Id', 'X-Mailrun-Timestamp', 'X-Mailrun-Nonce', 'X-Mailrun-Signature'];
    $values = array_map($get, $names);
    $present = count(array_filter($values, fn ($v) => $v !== null));
    if ($present === 0) {
        throw new MrFault('MissingSignature', 'request is not signed (no X-Mailrun-* headers)');
    }
    if ($present < 4) {
        throw new MrFault('BadSignature', 'malformed signature headers: some X-Mailrun-* signature headers are missing');
    }
    [$keyId, $ts, $nonce, $sig] = array_map('trim', $values);
    if ($keyId === '' || strlen($keyId) > 128 || !preg_match('/^[!-~]+$/', $keyId)) {
        throw new MrFault('BadSignature', 'malformed signature headers: bad X-Mailrun-Key-Id');
    }
    if (!preg_match('/^[0-9]{1,19}$/', $ts) || (strlen($ts) === 19 && strcmp($ts, '9223372036854775807') > 0)) {
        throw new MrFault('BadSignature', 'malformed signature headers: X-Mailrun-Timestamp must be unix seconds');
    }
    if (!preg_match('/^[0-9a-f]{32}$/', $nonce)) {
        throw new MrFault('BadSignature', 'malformed signature headers: X-Mailrun-Nonce must be 32 lowercase hex characters');
    }
    if (!preg_match('/^[0-9a-f]{64}$/', $sig)) {
        throw new MrFault('BadSignature', 'malformed signature headers: X-Mailrun-Signature must be 64 lowercase hex characters');
    }
    return ['key_id' => $keyId, 'timestamp' => (int) $ts, 'nonce' => $nonce, 'signature' => $sig];
}

/**
 * Checks `$sig` over `$text` with every key of its key id (all tried, constant time),
 * then the clock window. Returns the matching [key_id, secret].
 */
function mr_verify(array $keys, array $sig, string $text, int $now): array
{
    $matched = null;
    $candidates = 0;
    foreach ($keys as $key) {
        if ($key[0] !== $sig['key_id']) {
            continue;
        }
        $candidates++;
        if (hash_equals(hash_hmac('sha256', $text, $key[1]), $sig['signature']) && $matched === null) {
            $matched = $key;
        }
    }
    if ($candidates === 0) {
        throw new MrFault('BadSignature', 'unknown key id ' . mr_quote($sig['key_id'], 128));
    }
    if ($matched === null) {
        throw new MrFault('BadSignature', 'signature does not match');
    }
    if (abs($sig['timestamp'] - $now) > MR_WINDOW_SECONDS) {
        throw new MrFault('StaleTimestamp', sprintf('timestamp %d is outside the ±%d s window around %d', $sig['timestamp'], MR_WINDOW_SECONDS, $now));
    }
    return $matched;
}

/** Records a request nonce; false when it was seen before (a replay). */
function mr_remember_nonce(string $dir, string $keyId, string $nonce): bool
{
    $safe = fn (string $s) => $s !== '' && strlen($s) <= 128 && preg_match('/^[A-Za-z0-9_.@-]+$/', $s) && $s[0] !== '.';
    if (!$safe($keyId) || !$safe($nonce)) {
        throw new MrExit(MR_EXIT_INTERNAL, 'key id or nonce is not a safe file name');
    }
    $nonces = "$dir/nonces";
    mr_mkdir($nonces);
    // Purge now and then: a replay older than the window fails the timestamp check.
    if (random_int(0, 19) === 0) {
        foreach (glob("$nonces/*") ?: [] as $f) {
            if (@filemtime($f) < mr_now() - MR_NONCE_TTL) {
                @unlink($f);
            }
        }
    }
    $old = umask(077);
    $fh = @fopen("$nonces/$keyId-$nonce", 'x');
    umask($old);
    if ($fh !== false) {
        fclose($fh);
        return true;
    }
    if (file_exists("$nonces/$keyId-$nonce")) {
        return false;
    }
    throw new MrExit(MR_EXIT_TEMPFAIL, "cannot record nonce in $nonces: " . mr_last_error());
}

// --------------------------------------------------------------------------------------
// XML: a streaming parse with the codec's limits, then typed decoding (protocol/codec.rs)

/** Parses untrusted XML into nested arrays [ns, name, text, children, mu]. */
function mr_xml_parse(string $xml, array $lim): array
{
    if (trim($xml) === '') {
        throw new MrFault('MalformedXml', 'empty document: no root element');
    }
    if (strlen($xml) > $lim['bytes']) {
        throw new MrFault('TooLarge', sprintf('envelope is %d bytes, the limit is %d bytes', strlen($xml), $lim['bytes']));
    }
    if (str_starts_with($xml, "\xEF\xBB\xBF")) {
        $xml = substr($xml, 3);
    }
    if (!preg_match('//u', $xml)) {
        throw new MrFault('MalformedXml', 'not well-formed XML: the document is not UTF-8');
    }
    // Refused before parsing, so no entity is ever defined, let alone expanded.
    if (stripos($xml, '<!DOCTYPE') !== false) {
        throw new MrFault('DoctypeRefused', 'DOCTYPE is not allowed in SOAP messages');
    }
    if (preg_match('/^\s*<\?xml\s([^?]*)\?>/', $xml, $m)) {
        if (preg_match('/encoding\s*=\s*["\']([^"\']*)["\']/', $m[1], $e) && strcasecmp($e[1], 'utf-8') !== 0) {
            throw new MrFault('MalformedXml', 'only UTF-8 is accepted, the declaration says ' . mr_quote($e[1], 40));
        }
        if (!preg_match('/version\s*=\s*["\']1\.0["\']/', $m[1])) {
            throw new MrFault('MalformedXml', 'only XML version 1.0 is accepted');
        }
    }
    $previous = libxml_use_internal_errors(true);
    libxml_clear_errors();
    try {
        $r = new XMLReader();
        if (!@$r->XML($xml, 'UTF-8', LIBXML_NONET)) {
            throw new MrFault('MalformedXml', 'not well-formed XML');
        }
        $stack = [];
        $root = null;
        $elements = 0;
        $path = fn () => implode('/', array_map(fn ($e) => $e[1], $stack));
        while (true) {
            $ok = @$r->read();
            $errors = array_filter(libxml_get_errors(), fn ($e) => $e->level >= LIBXML_ERR_ERROR);
            if ($errors) {
                $e = reset($errors);
                throw new MrFault('MalformedXml', sprintf('not well-formed XML at line %d: %s', $e->line, trim($e->message)));
            }
            if (!$ok) {
                break;
            }
            switch ($r->nodeType) {
                case XMLReader::ELEMENT:
                    if ($root !== null) {
                        throw new MrFault('MalformedXml', 'element <' . mr_clip($r->localName) . '> after the root element');
                    }
                    if (count($stack) >= $lim['depth']) {
                        $head = implode('/', array_map(fn ($e) => $e[1], array_slice($stack, 0, 4)));
                        throw new MrFault('TooDeep', sprintf('elements nested deeper than %d levels under <%s/...>', $lim['depth'], $head));
                    }
                    if (++$elements > $lim['elements']) {
                        throw new MrFault('TooManyElements', sprintf('more than %d elements', $lim['elements']));
                    }
                    $name = $r->localName;
                    $ns = (string) $r->namespaceURI;
                    $empty = $r->isEmptyElement;
                    $mu = false;
                    if ($r->attributeCount > $lim['attributes']) {
                        throw new MrFault('TooManyElements', sprintf('more than %d attributes on <%s>', $lim['attributes'], ltrim($path() . '/' . $name, '/')));
                    }
                    if ($r->moveToFirstAttribute()) {
                        do {
                            if (strlen($r->value) > $lim['text']) {
                                throw new MrFault('TooLarge', sprintf('attribute value on <%s> exceeds %d bytes', ltrim($path() . '/' . $name, '/'), $lim['text']));
                            }
                            if ($r->namespaceURI === MR_SOAP_NS && $r->localName === 'mustUnderstand') {
                                $mu = in_array(trim($r->value), ['1', 'true'], true);
                            }
                        } while ($r->moveToNextAttribute());
                        $r->moveToElement();
                    }
                    $node = [$ns, $name, '', [], $mu];
                    if ($empty) {
                        if ($stack) {
                            $stack[count($stack) - 1][3][] = $node;
                        } else {
                            $root = $node;
                        }
                    } else {
                        $stack[] = $node;
                    }
                    break;
                case XMLReader::END_ELEMENT:
                    $node = array_pop($stack);
                    if ($stack) {
                        $stack[count($stack) - 1][3][] = $node;
                    } else {
                        $root = $node;
                    }
                    break;
                case XMLReader::TEXT:
                case XMLReader::CDATA:
                case XMLReader::WHITESPACE:
                case XMLReader::SIGNIFICANT_WHITESPACE:
                    $text = $r->value;
                    if (!$stack) {
                        if (trim($text, " \t\r\n") !== '') {
                            throw new MrFault('MalformedXml', 'text outside the root element');
                        }
                        break;
                    }
                    $top = count($stack) - 1;
                    if (strlen($stack[$top][2]) + strlen($text) > $lim['text']) {
                        throw new MrFault('TooLarge', sprintf('text of <%s> exceeds %d bytes', $path(), $lim['text']));
                    }
                    $stack[$top][2] .= $text;
                    break;
                case XMLReader::PI:
                    throw new MrFault('MalformedXml', 'processing instruction <?' . mr_clip($r->name) . '?> is not allowed');
                case XMLReader::DOC_TYPE:
                    throw new MrFault('DoctypeRefused', 'DOCTYPE is not allowed in SOAP messages');
                case XMLReader::ENTITY_REF:
                    throw new MrFault('MalformedXml', 'undefined entity &' . mr_clip($r->name) . ';');
                default:
                    break; // comments, the declaration
            }
        }
        if ($stack) {
            throw new MrFault('MalformedXml', 'truncated document: <' . $path() . '> is not closed');
        }
        if ($root === null) {
            throw new MrFault('MalformedXml', 'empty document: no root element');
        }
        return $root;
    } finally {
        libxml_clear_errors();
        libxml_use_internal_errors($previous);
    }
}

/** The one element in soap:Body, after the envelope checks of codec::envelope_payload. */
function mr_envelope_payload(array $root): array
{
    [$ns, $name] = $root;
    if ($name !== 'Envelope') {
        throw new MrFault('MalformedXml', 'root element is <' . mr_clip($name) . '>, expected soap:Envelope');
    }
    if ($ns !== MR_SOAP_NS) {
        $hint = $ns === 'http://www.w3.org/2003/05/soap-envelope' ? ' (SOAP 1.2 is not supported; use SOAP 1.1)' : '';
        throw new MrFault('WrongNamespace', '<Envelope> is in namespace ' . mr_quote(mr_clip($ns)) . ', expected "' . MR_SOAP_NS . '"' . $hint);
    }
    mr_no_text($root, 'Envelope');
    $body = null;
    foreach ($root[3] as $i => $child) {
        if ($child[0] === MR_SOAP_NS && $child[1] === 'Header' && $i === 0) {
            foreach ($child[3] as $entry) {
                if ($entry[4]) {
                    throw new MrFault('InvalidValue', 'header entry <' . mr_clip($entry[1]) . '> is marked mustUnderstand and is not understood');
                }
            }
        } elseif ($child[0] === MR_SOAP_NS && $child[1] === 'Body' && $body === null) {
            $body = $child;
        } else {
            throw new MrFault('MalformedXml', 'unexpected element <' . mr_clip($child[1]) . '> in Envelope');
        }
    }
    if ($body === null) {
        throw new MrFault('MalformedXml', 'missing soap:Body in Envelope');
    }
    mr_no_text($body, 'Envelope/Body');
    if (count($body[3]) === 0) {
        throw new MrFault('MalformedXml', 'soap:Body is empty');
    }
    if (count($body[3]) > 1) {
        throw new MrFault('MalformedXml', 'soap:Body holds more than one element (second: <' . mr_clip($body[3][1][1]) . '>)');
    }
    return $body[3][0];
}

function mr_no_text(array $el, string $path): void
{
    if (trim($el[2], " \t\r\n") !== '') {
        throw new MrFault('MalformedXml', "unexpected text in $path");
    }
}

/**
 * Sorts children into the expected names (`$spec`: name => 'one'|'opt'|'many'), refusing
 * foreign namespaces, unknown names, duplicates, stray text and missing required ones.
 */
function mr_fields(array $el, string $path, array $spec): array
{
    mr_no_text($el, $path);
    $slots = array_fill_keys(array_keys($spec), []);
    foreach ($el[3] as $child) {
        if ($child[0] !== MR_NS) {
            throw new MrFault('WrongNamespace', '<' . mr_clip($child[1]) . "> in $path is in namespace " . mr_quote(mr_clip($child[0])) . ', expected "' . MR_NS . '"');
        }
        if (!array_key_exists($child[1], $spec)) {
            throw new MrFault('MalformedXml', 'unexpected element <' . mr_clip($child[1]) . "> in $path");
        }
        if ($spec[$child[1]] !== 'many' && $slots[$child[1]]) {
            throw new MrFault('MalformedXml', "duplicate <{$child[1]}> in $path");
        }
        $slots[$child[1]][] = $child;
    }
    foreach ($spec as $name => $card) {
        if ($card === 'one' && !$slots[$name]) {
            throw new MrFault('MissingField', "missing <$name> in $path");
        }
    }
    return $slots;
}

function mr_leaf(array $el, string $path): string
{
    if ($el[3]) {
        throw new MrFault('MalformedXml', 'unexpected element <' . mr_clip($el[3][0][1]) . "> inside <{$el[1]}> in $path");
    }
    return $el[2];
}

function mr_invalid(array $el, string $path, string $problem): MrFault
{
    return new MrFault('InvalidValue', "invalid value for <{$el[1]}> in $path: " . mr_quote($el[2]) . " $problem");
}

function mr_invalid_quiet(array $el, string $path, string $problem): MrFault
{
    return new MrFault('InvalidValue', "invalid value for <{$el[1]}> in $path: $problem");
}

function mr_str(array $el, string $path, int $max): string
{
    $text = mr_leaf($el, $path);
    if (mr_char_count($text) > $max) {
        throw mr_invalid_quiet($el, $path, "longer than $max characters");
    }
    return $text;
}

/** A Line: no CR or LF (it ends up in a header or an SMTP command). */
function mr_line(array $el, string $path, int $max): string
{
    $text = mr_str($el, $path, $max);
    if (strpbrk($text, "\r\n") !== false) {
        throw mr_invalid_quiet($el, $path, 'contains a line break');
    }
    return $text;
}

function mr_int(array $el, string $path, string $what, int $min, int $max): int
{
    $text = trim(mr_leaf($el, $path));
    $v = preg_match('/^[+-]?[0-9]+$/', $text) ? filter_var(preg_replace('/^([+-]?)0+(?=[0-9])/', '$1', $text), FILTER_VALIDATE_INT) : false;
    if ($v === false) {
        throw mr_invalid($el, $path, "is not $what");
    }
    if ($v < $min || $v > $max) {
        throw mr_invalid($el, $path, "is not in $min..=$max");
    }
    return $v;
}

function mr_enum(array $el, string $path, array $allowed): string
{
    $text = trim(mr_leaf($el, $path));
    if (!in_array($text, $allowed, true)) {
        throw mr_invalid($el, $path, 'is not one of ' . implode(', ', $allowed));
    }
    return $text;
}

function mr_http_url(array $el, string $path): string
{
    $text = trim(mr_leaf($el, $path));
    if (strlen($text) > 2048 || !preg_match('#^https?://\S+$#', $text)) {
        throw mr_invalid($el, $path, 'is not an http(s) URL');
    }
    return $text;
}

/** Decodes a request the runner answers: [operation, fields]. */
function mr_decode_request(string $bytes): array
{
    $payload = mr_envelope_payload(mr_xml_parse($bytes, MR_LIMITS_REQUEST));
    [$ns, $name] = $payload;
    if ($ns === MR_SOAP_NS && $name === 'Fault') {
        throw new MrFault('UnknownOperation', 'a runner does not answer Fault');
    }
    if ($ns !== MR_NS) {
        throw new MrFault('WrongNamespace', '<' . mr_clip($name) . '> in soap:Body is in namespace ' . mr_quote(mr_clip($ns)) . ', expected "' . MR_NS . '"');
    }
    $path = $name;
    switch ($name) {
        case 'JobRunnerReady':
            $f = mr_fields($payload, $path, ['runnerId' => 'one', 'queued' => 'one']);
            return [$name, [
                'runner_id' => mr_str($f['runnerId'][0], $path, 128),
                'queued' => mr_int($f['queued'][0], $path, 'an unsigned 64-bit integer', 0, PHP_INT_MAX),
            ]];
        case 'JobRunnerConfigUpdate':
            return [$name, mr_decode_config_update($payload, $path)];
        case 'JobRunRequest':
        case 'JobRun':
        case 'JobRunnerReadyResponse':
        case 'JobRunnerConfigUpdateResponse':
            return [$name, null];
        default:
            throw new MrFault('UnknownOperation', 'unknown operation <' . mr_clip($name) . '>');
    }
}

function mr_decode_config_update(array $el, string $path): array
{
    $f = mr_fields($el, $path, ['runnerId' => 'one', 'version' => 'one', 'settings' => 'one']);
    $sp = "$path/settings";
    $s = mr_fields($f['settings'][0], $sp, [
        'batchSize' => 'one', 'sendRatePerSecond' => 'one', 'smtpConnectTimeoutSeconds' => 'one',
        'smtpCommandTimeoutSeconds' => 'one', 'smtpDataTimeoutSeconds' => 'one', 'pollIntervalSeconds' => 'one',
        'leaseSafetyMarginSeconds' => 'one', 'dispatcherUrl' => 'one', 'software' => 'opt', 'replyPolicy' => 'opt',
        'maxSessions' => 'opt', 'maxSessionsPerAccount' => 'opt',
    ]);
    $policy = null;
    if ($s['replyPolicy']) {
        $policy = mr_decode_reply_policy($s['replyPolicy'][0], "$sp/replyPolicy");
    }
    $software = null;
    if ($s['software']) {
        $swp = "$sp/software";
        $sw = mr_fields($s['software'][0], $swp, ['version' => 'one', 'url' => 'one', 'sha256' => 'one']);
        $sha = trim(mr_leaf($sw['sha256'][0], $swp));
        if (!preg_match('/^[0-9a-f]{64}$/', $sha)) {
            throw mr_invalid($sw['sha256'][0], $swp, 'is not 64 lowercase hex characters');
        }
        $software = ['version' => mr_str($sw['version'][0], $swp, 64), 'url' => mr_http_url($sw['url'][0], $swp), 'sha256' => $sha];
    }
    $version = mr_int($f['version'][0], $path, 'a 64-bit integer', PHP_INT_MIN, PHP_INT_MAX);
    if ($version < 1) {
        throw mr_invalid($f['version'][0], $path, 'is not a version (must be at least 1)');
    }
    $rateEl = $s['sendRatePerSecond'][0];
    $rateText = trim(mr_leaf($rateEl, $sp));
    if (!is_numeric($rateText) || !is_finite((float) $rateText) || (float) $rateText < 0) {
        throw mr_invalid($rateEl, $sp, 'is not a finite number of at least 0');
    }
    $seconds = fn (string $n) => mr_int($s[$n][0], $sp, 'an unsigned 32-bit integer', 1, 86400);
    $optional = fn (string $n) => $s[$n] ? mr_int($s[$n][0], $sp, 'an unsigned 32-bit integer', 1, 1000) : null;
    return [
        'runner_id' => mr_str($f['runnerId'][0], $path, 128),
        'version' => $version,
        'settings' => [
            'batch_size' => mr_int($s['batchSize'][0], $sp, 'an unsigned 32-bit integer', 1, 100000),
            'send_rate_per_second' => (float) $rateText,
            'smtp_connect_timeout_seconds' => $seconds('smtpConnectTimeoutSeconds'),
            'smtp_command_timeout_seconds' => $seconds('smtpCommandTimeoutSeconds'),
            'smtp_data_timeout_seconds' => $seconds('smtpDataTimeoutSeconds'),
            'poll_interval_seconds' => $seconds('pollIntervalSeconds'),
            'lease_safety_margin_seconds' => mr_int($s['leaseSafetyMarginSeconds'][0], $sp, 'an unsigned 32-bit integer', 0, 86400),
            'dispatcher_url' => mr_http_url($s['dispatcherUrl'][0], $sp),
            'software' => $software,
            'reply_policy' => $policy,
            'max_sessions' => $optional('maxSessions'),
            'max_sessions_per_account' => $optional('maxSessionsPerAccount'),
        ],
    ];
}

function mr_decode_reply_policy(array $el, string $path): array
{
    mr_no_text($el, $path);
    if (count($el[3]) > 1000) {
        throw new MrFault('InvalidValue', sprintf('invalid value for <replyPolicy> in %s: %d rules, at most 1000 are accepted', dirname($path), count($el[3])));
    }
    $f = mr_fields($el, $path, ['rule' => 'many']);
    $rules = [];
    $last = 0;
    foreach ($f['rule'] as $i => $ruleEl) {
        $rp = sprintf('%s/rule[%d]', $path, $i + 1);
        $r = mr_fields($ruleEl, $rp, ['position' => 'one', 'code' => 'opt', 'enhanced' => 'opt', 'pattern' => 'opt', 'domain' => 'opt', 'account' => 'opt', 'action' => 'one', 'throttle' => 'one']);
        $rule = [
            'position' => mr_int($r['position'][0], $rp, 'an unsigned 32-bit integer', 1, 999999999),
            'code' => $r['code'] ? trim(mr_leaf($r['code'][0], $rp)) : null,
            'enhanced' => $r['enhanced'] ? trim(mr_leaf($r['enhanced'][0], $rp)) : null,
            'pattern' => $r['pattern'] ? mr_leaf($r['pattern'][0], $rp) : null,
            'domain' => $r['domain'] ? mr_leaf($r['domain'][0], $rp) : null,
            'account' => $r['account'] ? mr_str($r['account'][0], $rp, 128) : null,
            'action' => mr_enum($r['action'][0], $rp, ['retry', 'another_account', 'suppress', 'fail']),
            'throttle' => mr_enum($r['throttle'][0], $rp, ['none', 'account', 'domain']),
        ];
        $problem = mr_check_rule($rule);
        if ($problem === null && $rule['position'] <= $last) {
            $problem = "position {$rule['position']} does not increase the previous $last";
        }
        if ($problem !== null) {
            throw new MrFault('InvalidValue', "$rp: $problem");
        }
        $last = $rule['position'];
        $rules[] = $rule;
    }
    return $rules;
}

/** protocol::reply_rules::check_rule. */
function mr_check_rule(array $rule): ?string
{
    if ($rule['code'] === null && $rule['enhanced'] === null && $rule['pattern'] === null) {
        return 'a rule needs a code, an enhanced status or a pattern';
    }
    if ($rule['code'] !== null && !preg_match('/^[245][0-9x][0-9x]$/', $rule['code'])) {
        return 'code ' . mr_quote(mr_clip($rule['code'])) . ' is not three characters like "550" or "4xx"';
    }
    if ($rule['enhanced'] !== null && !preg_match('/^[245](\.[0-9]{1,3}){0,2}$/', $rule['enhanced'])) {
        return 'enhanced status ' . mr_quote(mr_clip($rule['enhanced'])) . ' is not a prefix like "5.7" or "5.7.1"';
    }
    if ($rule['pattern'] !== null) {
        $n = mr_char_count($rule['pattern']);
        if ($n < 1 || $n > 1000) {
            return 'pattern must be 1 to 1000 characters';
        }
        if (strpbrk($rule['pattern'], "\r\n") !== false) {
            return 'pattern contains a line break';
        }
    }
    if ($rule['domain'] !== null && (strlen($rule['domain']) > 253 || !preg_match('/^[a-z0-9]([a-z0-9.\-]*[a-z0-9])?$/', $rule['domain']))) {
        return 'domain ' . mr_quote(mr_clip($rule['domain'])) . ' is not a lowercase domain like example.com';
    }
    if ($rule['account'] !== null && ($rule['account'] === '' || preg_match('/[\x00-\x1f\x7f]/', $rule['account']))) {
        return 'account must be 1 to 128 characters without control characters';
    }
    return null;
}

/**
 * Decodes a JobRun leniently (codec::decode_lenient): a message that breaks the contract
 * is set aside (reported failed) when its id and lease token are readable.
 * Returns [run, refused]; a Fault envelope throws MrExit with the fault.
 */
function mr_decode_job_run(string $bytes): array
{
    $payload = mr_envelope_payload(mr_xml_parse($bytes, MR_LIMITS_RESPONSE));
    if ($payload[0] === MR_SOAP_NS && $payload[1] === 'Fault') {
        [$reason, $message] = mr_decode_fault($payload);
        throw new MrFault($reason, $message);
    }
    if ($payload[0] !== MR_NS || $payload[1] !== 'JobRun') {
        throw new MrFault('UnknownOperation', 'expected a JobRun, got <' . mr_clip($payload[1]) . '>');
    }
    $path = 'JobRun';
    $f = mr_fields($payload, $path, ['jobRunId' => 'one', 'leaseSeconds' => 'one', 'acknowledged' => 'opt', 'messages' => 'one']);
    $acks = [];
    if ($f['acknowledged']) {
        $ap = "$path/acknowledged";
        foreach (mr_fields($f['acknowledged'][0], $ap, ['ack' => 'many'])['ack'] as $i => $ack) {
            $p = sprintf('%s/ack[%d]', $ap, $i + 1);
            $a = mr_fields($ack, $p, ['messageId' => 'one', 'leaseToken' => 'one']);
            $acks[] = [mr_int($a['messageId'][0], $p, 'a 64-bit integer', PHP_INT_MIN, PHP_INT_MAX), mr_str($a['leaseToken'][0], $p, 128)];
        }
    }
    $messages = [];
    $refused = [];
    $mp = "$path/messages";
    foreach (mr_fields($f['messages'][0], $mp, ['message' => 'many'])['message'] as $i => $m) {
        $p = sprintf('%s/message[%d]', $mp, $i + 1);
        try {
            $messages[] = mr_decode_message($m, $p);
        } catch (MrFault $fault) {
            $identity = mr_message_identity($m, $p);
            if ($identity === null) {
                throw $fault;
            }
            $refused[] = ['id' => $identity[0], 'lease_token' => $identity[1], 'reason' => $fault->getMessage()];
        }
    }
    return [[
        'job_run_id' => mr_str($f['jobRunId'][0], $path, 128),
        'lease_seconds' => mr_int($f['leaseSeconds'][0], $path, 'an unsigned 32-bit integer', 0, 4294967295),
        'acknowledged' => $acks,
        'messages' => $messages,
    ], $refused];
}

function mr_decode_fault(array $el): array
{
    $code = '';
    $string = '';
    $reason = null;
    $message = null;
    foreach ($el[3] as $c) {
        if ($c[1] === 'faultcode') {
            $code = trim($c[2]);
        } elseif ($c[1] === 'faultstring') {
            $string = $c[2];
        } elseif ($c[1] === 'detail') {
            foreach ($c[3] as $d) {
                if ($d[1] === 'FaultDetail') {
                    foreach ($d[3] as $x) {
                        if ($x[1] === 'reason') {
                            $reason = trim($x[2]);
                        } elseif ($x[1] === 'message') {
                            $message = $x[2];
                        }
                    }
                }
            }
        }
    }
    $fallback = str_ends_with($code, 'Server') ? 'Unavailable' : 'InvalidValue';
    return [$reason ?? $fallback, $message ?? $string];
}

function mr_message_identity(array $m, string $path): ?array
{
    $id = null;
    $token = null;
    foreach ($m[3] as $c) {
        if ($c[0] !== MR_NS) {
            continue;
        }
        if ($c[1] === 'id') {
            if ($id !== null) {
                return null;
            }
            $t = trim($c[2]);
            $id = (!$c[3] && preg_match('/^-?[0-9]{1,18}$/', $t)) ? (int) $t : false;
        } elseif ($c[1] === 'leaseToken') {
            if ($token !== null) {
                return null;
            }
            $token = (!$c[3] && $c[2] !== '' && mr_char_count($c[2]) <= 128) ? $c[2] : false;
        }
    }
    return (is_int($id) && is_string($token)) ? [$id, $token] : null;
}

function mr_decode_message(array $m, string $p): array
{
    $f = mr_fields($m, $p, [
        'id' => 'one', 'leaseToken' => 'one', 'messageIdHeader' => 'one', 'account' => 'one', 'from' => 'one',
        'replyTo' => 'opt', 'to' => 'many', 'cc' => 'many', 'bcc' => 'many', 'subject' => 'one', 'textBody' => 'opt',
        'htmlBody' => 'opt', 'header' => 'many', 'attachment' => 'many',
    ]);
    $ap = "$p/account";
    $a = mr_fields($f['account'][0], $ap, ['name' => 'one', 'host' => 'one', 'port' => 'one', 'security' => 'one', 'username' => 'opt', 'password' => 'opt', 'maxConnections' => 'opt']);
    $lines = fn (string $n) => array_map(fn ($e) => mr_line($e, $p, 998), $f[$n]);
    $headers = [];
    foreach ($f['header'] as $i => $h) {
        $hp = sprintf('%s/header[%d]', $p, $i + 1);
        $hf = mr_fields($h, $hp, ['name' => 'one', 'value' => 'one']);
        $name = mr_str($hf['name'][0], $hp, 76);
        if (!preg_match('/^[!-9;-~]+$/', $name)) {
            throw mr_invalid($hf['name'][0], $hp, 'is not a header name (printable ASCII without colon)');
        }
        $headers[] = [$name, mr_line($hf['value'][0], $hp, 998)];
    }
    $attachments = [];
    foreach ($f['attachment'] as $i => $att) {
        $tp = sprintf('%s/attachment[%d]', $p, $i + 1);
        $af = mr_fields($att, $tp, ['filename' => 'one', 'contentType' => 'one', 'data' => 'one']);
        $b64 = preg_replace('/\s+/', '', mr_leaf($af['data'][0], $tp));
        $data = base64_decode($b64, true);
        if ($data === false) {
            throw mr_invalid_quiet($af['data'][0], $tp, 'is not base64');
        }
        $attachments[] = ['filename' => mr_line($af['filename'][0], $tp, 255), 'content_type' => mr_line($af['contentType'][0], $tp, 255), 'data' => $data];
    }
    $subject = mr_str($f['subject'][0], $p, 16384);
    if (strpbrk($subject, "\r\n") !== false) {
        throw mr_invalid_quiet($f['subject'][0], $p, 'contains a line break');
    }
    $leaseToken = mr_str($f['leaseToken'][0], $p, 128);
    return [
        'id' => mr_int($f['id'][0], $p, 'a 64-bit integer', PHP_INT_MIN, PHP_INT_MAX),
        'lease_token' => $leaseToken,
        'message_id_header' => mr_line($f['messageIdHeader'][0], $p, 998),
        'account' => [
            'name' => mr_str($a['name'][0], $ap, 128),
            'host' => mr_line($a['host'][0], $ap, 255),
            'port' => mr_int($a['port'][0], $ap, 'a port', 1, 65535),
            'security' => mr_enum($a['security'][0], $ap, ['none', 'starttls', 'tls']),
            'username' => $a['username'] ? mr_str($a['username'][0], $ap, 255) : null,
            'password' => $a['password'] ? mr_str($a['password'][0], $ap, 1024) : null,
            'max_connections' => $a['maxConnections'] ? mr_int($a['maxConnections'][0], $ap, 'an unsigned 32-bit integer', 1, 1000) : null,
        ],
        'from' => mr_line($f['from'][0], $p, 998),
        'reply_to' => $f['replyTo'] ? mr_line($f['replyTo'][0], $p, 998) : null,
        'to' => $lines('to'),
        'cc' => $lines('cc'),
        'bcc' => $lines('bcc'),
        'subject' => $subject,
        'text_body' => $f['textBody'] ? mr_leaf($f['textBody'][0], $p) : null,
        'html_body' => $f['htmlBody'] ? mr_leaf($f['htmlBody'][0], $p) : null,
        'headers' => $headers,
        'attachments' => $attachments,
    ];
}

// --------------------------------------------------------------------------------------
// Encoding (codec::encode's layout)

/** XML text: &, <, > escaped, CR as &#13; (survives line-end normalisation), C0 → U+FFFD. */
function mr_esc(string $s): string
{
    $s = preg_replace('/[\x00-\x08\x0B\x0C\x0E-\x1F]/', "\u{FFFD}", $s);
    return str_replace(['&', '<', '>', "\r"], ['&amp;', '&lt;', '&gt;', '&#13;'], $s);
}

function mr_envelope(string $inner): string
{
    return "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<soap:Envelope xmlns:soap=\"" . MR_SOAP_NS . '" xmlns:m="' . MR_NS . "\">\n  <soap:Body>\n"
        . $inner . "  </soap:Body>\n</soap:Envelope>\n";
}

/** An element with text children: `$fields` is [[name, value|null], ...] at `$indent`. */
function mr_el(string $name, array $fields, int $indent): string
{
    $pad = str_repeat('  ', $indent);
    $out = "$pad<m:$name>\n";
    foreach ($fields as [$n, $v]) {
        if ($v === null) {
            continue;
        }
        $out .= is_array($v) ? mr_el($n, $v, $indent + 1) : ($v === '' ? "$pad  <m:$n></m:$n>\n" : "$pad  <m:$n>" . mr_esc((string) $v) . "</m:$n>\n");
    }
    return $out . "$pad</m:$name>\n";
}

function mr_fault_body(MrFault $f): string
{
    $msg = mr_esc($f->getMessage());
    $code = $f->isServer() ? 'soap:Server' : 'soap:Client';
    return mr_envelope("    <soap:Fault>\n      <faultcode>$code</faultcode>\n      <faultstring>$msg</faultstring>\n      <detail>\n        <m:FaultDetail>\n"
        . "          <m:reason>{$f->reason}</m:reason>\n          <m:message>$msg</m:message>\n        </m:FaultDetail>\n      </detail>\n    </soap:Fault>\n");
}

function mr_result_xml(array $r): array
{
    $fields = [
        ['jobRunId', $r['job_run_id']], ['messageId', (string) $r['message_id']], ['leaseToken', $r['lease_token']],
        ['outcome', $r['outcome']], ['smtpCode', $r['smtp_code'] ?? null], ['enhancedStatus', $r['enhanced_status'] ?? null],
        ['text', isset($r['text']) ? mr_clip_bytes($r['text'], 8192) : null], ['attemptedAt', $r['attempted_at']],
    ];
    foreach ($r['recipients'] ?? [] as $rc) {
        $fields[] = ['recipient', [['address', $rc['address']], ['outcome', $rc['outcome']], ['smtpCode', $rc['smtp_code'] ?? null],
            ['enhancedStatus', $rc['enhanced_status'] ?? null], ['text', isset($rc['text']) ? mr_clip_bytes($rc['text'], 8192) : null]]];
    }
    return $fields;
}

/** At most `$max` characters (the XSD's SmtpText), cut on a character boundary. */
function mr_clip_bytes(string $s, int $max): string
{
    if (!preg_match('//u', $s)) {
        $s = iconv('UTF-8', 'UTF-8//IGNORE', $s) ?: '';
    }
    return mr_char_count($s) > $max ? implode('', array_slice(preg_split('//u', $s, -1, PREG_SPLIT_NO_EMPTY), 0, $max)) : $s;
}

function mr_job_run_request(array $config, int $capacity, array $results, ?array $held): string
{
    $out = "    <m:JobRunRequest>\n";
    $out .= '      <m:runnerId>' . mr_esc($config['runner_id']) . "</m:runnerId>\n";
    $out .= "      <m:capacity>$capacity</m:capacity>\n";
    $out .= '      <m:softwareVersion>' . MR_SOFTWARE_VERSION . "</m:softwareVersion>\n";
    $out .= "      <m:configVersion>{$config['settings']['version']}</m:configVersion>\n";
    if ($results) {
        $out .= "      <m:results>\n";
        foreach ($results as $r) {
            $out .= mr_el('result', mr_result_xml($r), 4);
        }
        $out .= "      </m:results>\n";
    }
    if ($held !== null) {
        $out .= $held ? "      <m:heldJobRuns>\n" . implode('', array_map(fn ($id) => '        <m:jobRunId>' . mr_esc($id) . "</m:jobRunId>\n", $held)) . "      </m:heldJobRuns>\n" : "      <m:heldJobRuns/>\n";
    }
    return mr_envelope($out . "    </m:JobRunRequest>\n");
}

// --------------------------------------------------------------------------------------
// The endpoint: JobRunnerReady and JobRunnerConfigUpdate (runner-cgi's checks and faults)

/**
 * Answers one SOAP request. Returns [status, headers, body, startCycle]. Faults before a
 * key is verified go out unsigned; after, they are signed with the key the request used.
 */
function mr_handle_soap(string $dir, string $path, callable $header, string $body): array
{
    $key = null;
    $sig = null;
    $startCycle = false;
    try {
        // The checks in the order of protocol/faults.md, as runner-cgi makes them.
        $action = mr_unquote((string) ($header('SOAPAction') ?? ''));
        $actionOp = null;
        foreach (['JobRunnerReady', 'JobRunnerConfigUpdate'] as $op) {
            if ($action === MR_ACTION_PREFIX . $op) {
                $actionOp = $op;
            }
        }
        if ($actionOp === null) {
            throw new MrFault('UnknownOperation', 'SOAPAction ' . mr_quote($action, 200) . ' names no operation of this endpoint');
        }
        try {
            $config = mr_load_config($dir);
        } catch (MrExit $e) {
            mr_log($e->getMessage());
            throw new MrFault('Internal', "not configured; see the endpoint's log");
        }
        $sig = mr_parse_signature($header);
        $keys = mr_accepted_keys($config);
        $named = null;
        foreach ($keys as $k) {
            if ($k[0] === $sig['key_id']) {
                $named = $named ?? $k;
            }
        }
        if ($named === null) {
            throw new MrFault('UnknownRunner', 'no runner has key id ' . mr_quote($sig['key_id'], 128));
        }
        $text = mr_string_to_sign('POST', $path, (string) ($header('SOAPAction') ?? ''), $sig['timestamp'], $sig['nonce'], $body);
        try {
            $key = mr_verify($keys, $sig, $text, mr_now());
        } catch (MrFault $f) {
            // A bad signature is signed with the named key (the real runner can trust the
            // refusal); a stale timestamp goes unsigned: one of the clocks is off.
            $key = $f->reason === 'StaleTimestamp' ? null : $named;
            throw $f;
        }
        [$op, $req] = mr_decode_request($body);
        if ($op !== $actionOp) {
            throw new MrFault('UnknownOperation', "body is $op but SOAPAction says $actionOp");
        }
        if ($req['runner_id'] !== $config['runner_id']) {
            throw new MrFault('UnknownRunner', 'runnerId ' . mr_quote($req['runner_id'], 128) . ' is not the runner of key id ' . mr_quote($key[0], 128));
        }
        // Last, so that only a request about to be carried out uses up its nonce.
        try {
            $fresh = mr_remember_nonce($dir, $sig['key_id'], $sig['nonce']);
        } catch (MrExit $e) {
            mr_log('cannot record the request nonce: ' . $e->getMessage());
            throw new MrFault('Internal', 'cannot record the request nonce');
        }
        if (!$fresh) {
            throw new MrFault('ReplayedNonce', 'nonce already used; sign every request afresh');
        }
        if ($op === 'JobRunnerReady') {
            [$answer, $startCycle] = mr_ready($dir, $config, $req);
        } else {
            $answer = mr_config_update($dir, $req);
        }
        $responseAction = MR_ACTION_PREFIX . $op . 'Response';
        return [200, mr_sign_response($key, $path, $responseAction, $answer, $sig['nonce']), $answer, $startCycle];
    } catch (Throwable $e) {
        // A bug or an unexpected failure: Internal, the detail in the log only.
        $fault = $e instanceof MrFault ? $e : new MrFault('Internal', 'internal error');
        if (!$e instanceof MrFault) {
            mr_log('internal error: ' . get_class($e) . ': ' . $e->getMessage());
        }
        $out = mr_fault_body($fault);
        $action = MR_ACTION_PREFIX . 'Fault';
        $headers = $key !== null ? mr_sign_response($key, $path, $action, $out, $sig['nonce']) : ['SOAPAction' => "\"$action\""];
        return [500, $headers, $out, false];
    }
}

function mr_sign_response(array $key, string $path, string $action, string $body, string $requestNonce): array
{
    $ts = mr_now();
    $nonce = mr_new_nonce();
    $text = mr_string_to_sign('RESPONSE', $path, $action, $ts, $nonce, $body, $requestNonce);
    return ['SOAPAction' => "\"$action\""] + mr_signature_headers($key[0], $key[1], $text, $ts, $nonce);
}

/** JobRunnerReady: the ready marker, then accepted (a cycle follows) or busy. */
function mr_ready(string $dir, array $config, array $req): array
{
    $answer = fn (string $status) => mr_envelope(mr_el('JobRunnerReadyResponse', [
        ['status', $status], ['softwareVersion', MR_SOFTWARE_VERSION], ['configVersion', (string) $config['settings']['version']],
    ], 2));
    if (!$config['enabled']) {
        return [$answer('disabled'), false];
    }
    try {
        mr_create_state($dir);
        mr_write_atomic("$dir/ready", mr_now() . ' ' . mr_new_nonce() . "\n");
    } catch (MrExit $e) {
        mr_log('cannot write the ready marker: ' . $e->getMessage());
        throw new MrFault('Internal', 'cannot write the ready marker');
    }
    // Taken here and kept for the cycle this request runs after answering.
    if (mr_try_lock($dir) === null) {
        return [$answer('busy'), false];
    }
    return [$answer('accepted'), true];
}

function mr_config_update(string $dir, array $req): string
{
    $lockFile = @fopen("$dir/config.lock", 'c');
    if ($lockFile === false || !flock($lockFile, LOCK_EX)) {
        mr_log("cannot lock $dir/config.lock: " . mr_last_error());
        throw new MrFault('Internal', 'cannot lock the configuration');
    }
    try {
        try {
            $config = mr_load_config($dir);
        } catch (MrExit $e) {
            throw new MrFault('Internal', "not configured; see the endpoint's log");
        }
        if ($req['version'] <= $config['settings']['version']) {
            throw new MrFault('VersionNotIncreasing', "version {$req['version']} does not increase the applied version {$config['settings']['version']}");
        }
        $s = $req['settings'];
        $problem = mr_check_url('dispatcher_url', $s['dispatcher_url'], (bool) $config['allow_plain_http']);
        if ($problem !== null) {
            throw new MrFault('InvalidValue', $problem);
        }
        $old = $config['settings'];
        $config['settings'] = [
            'version' => $req['version'],
            'batch_size' => $s['batch_size'],
            'send_rate_per_second' => $s['send_rate_per_second'],
            'smtp_connect_timeout_seconds' => $s['smtp_connect_timeout_seconds'],
            'smtp_command_timeout_seconds' => $s['smtp_command_timeout_seconds'],
            'smtp_data_timeout_seconds' => $s['smtp_data_timeout_seconds'],
            'poll_interval_seconds' => $s['poll_interval_seconds'],
            'lease_safety_margin_seconds' => $s['lease_safety_margin_seconds'],
            // Absent (an older dispatcher): the values in force stay.
            'max_sessions' => $s['max_sessions'] ?? $old['max_sessions'],
            'max_sessions_per_account' => $s['max_sessions_per_account'] ?? $old['max_sessions_per_account'],
            'software' => $s['software'],
            'reply_policy' => $s['reply_policy'] ?? $old['reply_policy'],
        ];
        $config['dispatcher_url'] = $s['dispatcher_url'];
        try {
            mr_save_config($dir, $config);
        } catch (MrExit $e) {
            mr_log('cannot write runner.json: ' . $e->getMessage());
            throw new MrFault('Internal', 'cannot write runner.json');
        }
        return mr_envelope(mr_el('JobRunnerConfigUpdateResponse', [['appliedVersion', (string) $req['version']]], 2));
    } finally {
        flock($lockFile, LOCK_UN);
        fclose($lockFile);
    }
}

// --------------------------------------------------------------------------------------
// Locks

/** The run lock (flock, released when the process or request ends); null when held. */
function mr_try_lock(string $dir)
{
    static $held = [];
    if (isset($held[$dir])) {
        return $held[$dir];
    }
    mr_mkdir($dir);
    $old = umask(077);
    $fh = @fopen("$dir/lock", 'c+');
    umask($old);
    if ($fh === false) {
        throw new MrExit(MR_EXIT_TEMPFAIL, "cannot open $dir/lock: " . mr_last_error());
    }
    if (!flock($fh, LOCK_EX | LOCK_NB)) {
        fclose($fh);
        return null;
    }
    // Who holds it, for operators (and the tests' kill -9).
    ftruncate($fh, 0);
    fwrite($fh, getmypid() . "\n");
    fflush($fh);
    $held[$dir] = $fh;
    return $fh;
}

// --------------------------------------------------------------------------------------
// Spool, journal and outbox (runner::spool's discipline)

function mr_valid_batch_id(string $id): bool
{
    return $id !== '' && strlen($id) <= 128 && preg_match('/^[A-Za-z0-9_.-]+$/', $id) && $id[0] !== '.';
}

/** Spooled batches, oldest lease first: [id => meta]. */
function mr_spooled(string $dir): array
{
    $out = [];
    foreach (glob("$dir/spool/*.xml") ?: [] as $xml) {
        $id = basename($xml, '.xml');
        $meta = json_decode((string) @file_get_contents("$dir/spool/$id.meta"), true);
        $out[$id] = is_array($meta) ? $meta : null;
    }
    uasort($out, fn ($a, $b) => ($a['received_at'] ?? 0) <=> ($b['received_at'] ?? 0));
    return $out;
}

function mr_read_outbox(string $dir): array
{
    $files = [];
    foreach (glob("$dir/outbox/*.results") ?: [] as $f) {
        $results = json_decode((string) @file_get_contents($f), true);
        if (is_array($results)) {
            $files[basename($f, '.results')] = $results;
        }
    }
    return $files;
}

/** Ids of batches received in the last hour ("unix-time id" lines). */
function mr_received(string $dir): array
{
    $ids = [];
    foreach (@file("$dir/received", FILE_IGNORE_NEW_LINES | FILE_SKIP_EMPTY_LINES) ?: [] as $line) {
        $parts = explode(' ', $line, 2);
        if (count($parts) === 2 && (int) $parts[0] >= mr_now() - MR_RECEIVED_TTL) {
            $ids[$parts[1]] = (int) $parts[0];
        }
    }
    return $ids;
}

function mr_remember_received(string $dir, string $id): void
{
    $ids = mr_received($dir);
    $ids[$id] = mr_now();
    $text = '';
    foreach ($ids as $i => $t) {
        $text .= "$t $i\n";
    }
    mr_write_atomic("$dir/received", $text);
}

/** Every batch the runner holds (heldJobRuns); null when more than the protocol carries. */
function mr_held(string $dir): ?array
{
    $ids = array_keys(mr_received($dir));
    foreach (array_keys(mr_spooled($dir)) as $id) {
        $ids[] = (string) $id;
    }
    foreach (array_keys(mr_read_outbox($dir)) as $id) {
        $ids[] = (string) $id;
    }
    $ids = array_values(array_unique(array_map('strval', $ids)));
    sort($ids);
    return count($ids) > MR_MAX_HELD ? null : $ids;
}

/** Opens a batch's journal: the outcomes so far, a torn last line cut off. */
function mr_open_journal(string $path): array
{
    $old = umask(077);
    $fh = @fopen($path, 'c+b');
    umask($old);
    if ($fh === false) {
        throw new MrExit(MR_EXIT_TEMPFAIL, "cannot open journal $path: " . mr_last_error());
    }
    $text = stream_get_contents($fh);
    $done = [];
    $good = 0;
    $offset = 0;
    while (($nl = strpos($text, "\n", $offset)) !== false) {
        $row = json_decode(substr($text, $offset, $nl - $offset), true);
        if (is_array($row) && isset($row['message_id'])) {
            $done[(string) $row['message_id']] = $row;
        }
        $offset = $nl + 1;
        $good = $offset;
    }
    if ($good < strlen($text)) {
        // A crash mid-append: the torn line is not an outcome.
        ftruncate($fh, $good);
        mr_fsync($fh);
    }
    fseek($fh, 0, SEEK_END);
    return [$fh, $done];
}

/** Appends one outcome and waits until it is on disk; nothing goes on before that. */
function mr_journal($fh, string $path, array $result): void
{
    $line = json_encode($result, JSON_UNESCAPED_SLASHES | JSON_INVALID_UTF8_SUBSTITUTE) . "\n";
    if (@fwrite($fh, $line) !== strlen($line) || !@fflush($fh) || !mr_fsync($fh)) {
        throw new MrExit(MR_EXIT_TEMPFAIL, "sending stopped: cannot write journal $path (disk full?)");
    }
}

/** Removes acknowledged results from the outbox; how many were acknowledged. */
function mr_acknowledge(string $dir, array $outbox, array $acks): int
{
    if (!$acks) {
        return 0;
    }
    $acked = [];
    foreach ($acks as [$id, $token]) {
        $acked["$id\0$token"] = true;
    }
    $count = 0;
    foreach ($outbox as $batch => $results) {
        $keep = array_values(array_filter($results, fn ($r) => !isset($acked[$r['message_id'] . "\0" . $r['lease_token']])));
        if (count($keep) === count($results)) {
            continue;
        }
        $count += count($results) - count($keep);
        $path = "$dir/outbox/$batch.results";
        if ($keep) {
            mr_write_atomic($path, json_encode($keep, JSON_UNESCAPED_SLASHES | JSON_INVALID_UTF8_SUBSTITUTE));
        } else {
            @unlink($path);
        }
    }
    return $count;
}

// --------------------------------------------------------------------------------------
// HTTP client: one signed POST to the dispatcher

/** Posts `$body`; returns [status, headers(lowercase), body, authenticated]. */
function mr_post_signed(array $config, string $action, string $body, int $timeout): array
{
    $url = $config['dispatcher_url'];
    $problem = mr_check_url('dispatcher_url', $url, (bool) $config['allow_plain_http']);
    if ($problem !== null) {
        throw new MrExit(MR_EXIT_CONFIG, $problem);
    }
    $path = parse_url($url, PHP_URL_PATH) ?: '/';
    $secret = hex2bin(strtolower($config['key']));
    $ts = mr_now();
    $nonce = mr_new_nonce();
    $sig = mr_signature_headers($config['key_id'], $secret, mr_string_to_sign('POST', $path, $action, $ts, $nonce, $body), $ts, $nonce);
    $headers = ['Content-Type: text/xml; charset=utf-8', "SOAPAction: \"$action\"", 'Connection: close'];
    foreach ($sig as $n => $v) {
        $headers[] = "$n: $v";
    }
    $context = stream_context_create([
        'http' => ['method' => 'POST', 'header' => implode("\r\n", $headers), 'content' => $body, 'timeout' => $timeout,
            'ignore_errors' => true, 'follow_location' => 0, 'max_redirects' => 1, 'protocol_version' => 1.1],
        'ssl' => ['verify_peer' => true, 'verify_peer_name' => true, 'allow_self_signed' => false],
    ]);
    $fh = @fopen($url, 'rb', false, $context);
    if ($fh === false) {
        throw new MrExit(MR_EXIT_UNAVAILABLE, 'dispatcher: ' . mr_last_error());
    }
    $raw = stream_get_meta_data($fh)['wrapper_data'] ?? [];
    // Read in pieces: a length cap given to file_get_contents is allocated up front.
    $response = '';
    while (!feof($fh)) {
        $piece = @fread($fh, 1 << 20);
        if ($piece === false || ($piece === '' && !empty(stream_get_meta_data($fh)['timed_out']))) {
            fclose($fh);
            throw new MrExit(MR_EXIT_TEMPFAIL, 'dispatcher: the answer was cut off');
        }
        $response .= $piece;
        if (strlen($response) > MR_LIMITS_RESPONSE['bytes']) {
            fclose($fh);
            throw new MrExit(MR_EXIT_DATA, 'dispatcher: the answer exceeds ' . MR_LIMITS_RESPONSE['bytes'] . ' bytes');
        }
    }
    fclose($fh);
    if (!$raw) {
        throw new MrExit(MR_EXIT_UNAVAILABLE, 'dispatcher: no HTTP answer');
    }
    $status = preg_match('#^HTTP/\S+\s+(\d{3})#', $raw[0], $m) ? (int) $m[1] : 0;
    $h = [];
    foreach (array_slice($raw, 1) as $line) {
        if (str_contains($line, ':')) {
            [$n, $v] = explode(':', $line, 2);
            $h[strtolower(trim($n))] = trim($v);
        }
    }
    $authenticated = false;
    if (isset($h['x-mailrun-signature'])) {
        $rsig = mr_parse_signature(fn ($n) => $h[strtolower($n)] ?? null);
        $raction = isset($h['soapaction']) ? mr_unquote($h['soapaction']) : $action;
        $text = mr_string_to_sign('RESPONSE', $path, $raction, $rsig['timestamp'], $rsig['nonce'], $response, $nonce);
        try {
            mr_verify([[$config['key_id'], $secret]], $rsig, $text, mr_now());
            $authenticated = true;
        } catch (MrFault $f) {
            throw new MrExit(MR_EXIT_UNAVAILABLE, 'dispatcher: response signature: ' . $f->getMessage());
        }
    }
    return [$status, $h, $response, $authenticated];
}

// --------------------------------------------------------------------------------------
// Poll: one JobRunRequest (report-only ones first while the outbox holds more than fits)

/**
 * Returns ['spooled' => id, 'messages' => n] or ['empty' => true] (the dispatcher has no
 * work); acknowledged results are forgotten only after a batch is spooled.
 */
function mr_poll(string $dir, array $config, ?int $capacity, int $timeout): array
{
    while (true) {
        $outbox = mr_read_outbox($dir);
        $all = [];
        foreach ($outbox as $results) {
            array_push($all, ...$results);
        }
        usort($all, fn ($a, $b) => [$a['attempted_at'], $a['message_id']] <=> [$b['attempted_at'], $b['message_id']]);
        $backlog = count($all) > MR_MAX_RESULTS_PER_REQUEST;
        $cap = $backlog ? 0 : ($capacity ?? (int) $config['settings']['batch_size']);
        $results = array_slice($all, 0, MR_MAX_RESULTS_PER_REQUEST);
        $body = mr_job_run_request($config, $cap, $results, mr_held($dir));
        // The lease clock starts before the request leaves: the local deadline is never
        // later than the dispatcher's.
        $requestedAt = mr_now();
        [$status, , $response, $authenticated] = mr_post_signed($config, MR_ACTION_PREFIX . 'JobRunRequest', $body, $timeout);
        try {
            [$run, $refused] = mr_decode_job_run($response);
        } catch (MrFault $f) {
            $code = match ($f->reason) {
                'MissingSignature', 'BadSignature', 'StaleTimestamp', 'UnknownRunner', 'RunnerDisabled', 'PlainHttpRefused' => MR_EXIT_CONFIG,
                'Unavailable', 'Internal' => MR_EXIT_UNAVAILABLE,
                default => MR_EXIT_DATA,
            };
            throw new MrExit($code, "dispatcher refused the request or answered badly (HTTP $status): {$f->reason}: " . $f->getMessage());
        }
        if ($status !== 200 || !$authenticated) {
            throw new MrExit(MR_EXIT_UNAVAILABLE, "dispatcher answered HTTP $status without a valid signature");
        }
        $count = count($run['messages']) + count($refused);
        if ($count > 0) {
            $problem = mr_check_job_run($run, $refused);
            if ($problem !== null) {
                throw new MrExit(MR_EXIT_DATA, "dispatcher sent an invalid JobRun: $problem");
            }
            $id = $run['job_run_id'];
            if (isset(mr_received($dir)[$id]) || is_file("$dir/spool/$id.xml") || is_file("$dir/outbox/$id.results")) {
                throw new MrExit(MR_EXIT_DATA, "the dispatcher answered with batch $id, which this runner already received (a replayed answer?); ignored");
            }
            mr_remember_received($dir, $id);
            mr_write_atomic("$dir/spool/$id.meta", json_encode(['received_at' => $requestedAt, 'lease_seconds' => $run['lease_seconds']]));
            mr_write_atomic("$dir/spool/$id.xml", $response);
        }
        $acked = mr_acknowledge($dir, $outbox, $run['acknowledged']);
        if ($count > 0) {
            return ['spooled' => $run['job_run_id'], 'messages' => $count, 'acknowledged' => $acked];
        }
        if ($backlog) {
            if ($acked === 0) {
                throw new MrExit(MR_EXIT_DATA, 'the dispatcher acknowledged none of the ' . count($results) . ' results reported; they stay in the outbox');
            }
            continue;
        }
        return ['empty' => true, 'acknowledged' => $acked];
    }
}

function mr_check_job_run(array $run, array $refused): ?string
{
    if (!mr_valid_batch_id($run['job_run_id'])) {
        return 'job run id ' . mr_quote($run['job_run_id']) . ' is not 1-128 characters of letters, digits, - _ .';
    }
    if ($run['lease_seconds'] === 0) {
        return 'lease_seconds is 0';
    }
    $seen = [];
    foreach (array_merge(array_map(fn ($m) => [$m['id'], $m['lease_token']], $run['messages']), array_map(fn ($r) => [$r['id'], $r['lease_token']], $refused)) as [$id, $token]) {
        if (isset($seen[$id])) {
            return "message $id appears twice";
        }
        if ($token === '') {
            return "message $id has no lease token";
        }
        $seen[$id] = true;
    }
    return null;
}

// --------------------------------------------------------------------------------------
// The reply policy (runner::reply_policy, protocol::reply_rules)

final class MrPolicy
{
    /** @var array<int, array> rules with a compiled 'regex' */
    private array $rules = [];
    private array $accounts = [];
    private array $domains = [];

    public function __construct(?array $rules)
    {
        foreach ($rules ?? [] as $rule) {
            $regex = null;
            if ($rule['pattern'] !== null) {
                // \b and \B mean backspace and backslash to PostgreSQL, word boundaries to
                // PCRE: skipped here as on the Rust runner; the dispatcher still applies it.
                if (preg_match('/(?<!\\\\)(\\\\\\\\)*\\\\[bB]/', $rule['pattern'])) {
                    continue;
                }
                $regex = "\x01" . $rule['pattern'] . "\x01isu";
                if (@preg_match($regex, '') === false) {
                    mr_log("reply rule at position {$rule['position']} skipped on this runner: its pattern does not compile here; the dispatcher still applies it");
                    continue;
                }
            }
            $rule['regex'] = $regex;
            $this->rules[] = $rule;
        }
    }

    public function decide(?int $code, ?string $enhanced, ?string $text, ?string $domain, string $account): ?array
    {
        foreach ($this->rules as $r) {
            if ($r['code'] !== null) {
                if ($code === null || strlen((string) $code) !== 3) {
                    continue;
                }
                $got = (string) $code;
                for ($i = 0; $i < 3; $i++) {
                    if ($r['code'][$i] !== 'x' && $r['code'][$i] !== $got[$i]) {
                        continue 2;
                    }
                }
            }
            if ($r['enhanced'] !== null && ($enhanced === null || !($enhanced === $r['enhanced'] || str_starts_with($enhanced, $r['enhanced'] . '.')))) {
                continue;
            }
            if ($r['regex'] !== null && ($text === null || preg_match($r['regex'], $text) !== 1)) {
                continue;
            }
            if ($r['domain'] !== null) {
                $d = $domain === null ? null : strtolower($domain);
                if ($d === null || !($d === $r['domain'] || str_ends_with($d, '.' . $r['domain']))) {
                    continue;
                }
            }
            if ($r['account'] !== null && $r['account'] !== $account) {
                continue;
            }
            return $r;
        }
        return null;
    }

    /** Why this message must not start, if it must not: [reason, code, enhanced]. */
    public function skipReason(array $msg): ?array
    {
        if (isset($this->accounts[$msg['account']['name']])) {
            return $this->accounts[$msg['account']['name']];
        }
        foreach (mr_all_recipients($msg) as $a) {
            $d = mr_address_domain($a);
            if ($d !== null && isset($this->domains[$d])) {
                return $this->domains[$d];
            }
        }
        return null;
    }

    /** Rewrites the outcomes the policy decides and sets accounts and domains aside. */
    public function review(array $msg, array &$result): void
    {
        if (!$this->rules) {
            return;
        }
        $account = $msg['account']['name'];
        foreach ($result['recipients'] as &$r) {
            if (!in_array($r['outcome'], ['Deferred', 'Failed'], true)) {
                continue;
            }
            $domain = mr_address_domain($r['address']);
            $rule = $this->decide($r['smtp_code'] ?? null, $r['enhanced_status'] ?? null, $r['text'] ?? null, $domain, $account);
            if ($rule !== null) {
                $r['outcome'] = self::outcomeOf($rule);
                $this->setAside($rule, $account, $domain, [$r['smtp_code'] ?? null, $r['enhanced_status'] ?? null, self::quote($r['smtp_code'] ?? null, $r['text'] ?? null)]);
            }
        }
        unset($r);
        if (!in_array($result['outcome'], ['Deferred', 'Failed'], true)) {
            return;
        }
        if ($result['recipients'] && !array_filter($result['recipients'], fn ($r) => !in_array($r['outcome'], ['Deferred', 'Failed'], true))) {
            $result['outcome'] = array_filter($result['recipients'], fn ($r) => $r['outcome'] === 'Deferred') ? 'Deferred' : 'Failed';
            return;
        }
        $own = array_map(fn ($r) => strtolower($r['address']), $result['recipients']);
        $domains = [];
        foreach (mr_all_recipients($msg) as $a) {
            if (!in_array(strtolower(mr_address_spec($a)), $own, true)) {
                $domains[mr_address_domain($a) ?? ''] = true;
            }
        }
        if (!$domains) {
            $domains[''] = true;
        }
        $cause = [$result['smtp_code'] ?? null, $result['enhanced_status'] ?? null, self::quote($result['smtp_code'] ?? null, $result['text'] ?? null)];
        $anyDeferred = false;
        foreach (array_keys($domains) as $d) {
            $d = $d === '' ? null : (string) $d;
            $rule = $this->decide($result['smtp_code'] ?? null, $result['enhanced_status'] ?? null, $result['text'] ?? null, $d, $account);
            if ($rule !== null) {
                $this->setAside($rule, $account, $d, $cause);
                $outcome = self::outcomeOf($rule);
            } else {
                $outcome = $result['outcome'];
            }
            $anyDeferred = $anyDeferred || $outcome === 'Deferred';
        }
        $result['outcome'] = $anyDeferred ? 'Deferred' : 'Failed';
    }

    private function setAside(array $rule, string $account, ?string $domain, array $cause): void
    {
        [$code, $enhanced, $quote] = $cause;
        if ($rule['throttle'] === 'account') {
            $this->accounts[$account] ??= ["not attempted: account $account throttled ($quote)", $code, $enhanced];
        } elseif ($rule['action'] === 'another_account') {
            $this->accounts[$account] ??= ["not attempted: account $account refused in this batch ($quote)", $code, $enhanced];
        }
        if ($rule['throttle'] === 'domain' && $domain !== null) {
            $this->domains[$domain] ??= ["not attempted: domain $domain throttled ($quote)", $code, $enhanced];
        }
    }

    private static function outcomeOf(array $rule): string
    {
        return in_array($rule['action'], ['suppress', 'fail'], true) ? 'Failed' : 'Deferred';
    }

    private static function quote(?int $code, ?string $text): string
    {
        $t = trim(mr_clip_bytes(preg_replace('/[\x00-\x1f\x7f]/', ' ', $text ?? ''), 200));
        return $code !== null ? trim("$code $t") : $t;
    }
}

function mr_all_recipients(array $msg): array
{
    return array_merge($msg['to'], $msg['cc'], $msg['bcc']);
}

/** "Name <user@example.com>" → "user@example.com". */
function mr_address_spec(string $a): string
{
    $open = strrpos($a, '<');
    $close = strrpos($a, '>');
    return ($open !== false && $close !== false && $open < $close) ? trim(substr($a, $open + 1, $close - $open - 1)) : trim($a);
}

function mr_address_domain(string $a): ?string
{
    $spec = mr_address_spec($a);
    $at = strrpos($spec, '@');
    return ($at === false || $at === strlen($spec) - 1) ? null : strtolower(substr($spec, $at + 1));
}

// --------------------------------------------------------------------------------------
// The message on the wire: MIME, CRLF only, header lines ≤ 998 octets, dot-stuffed

function mr_crlf(string $s): string
{
    return preg_replace("/\r\n|\r|\n/", "\r\n", $s);
}

/** RFC 2047 encoded-words of at most 75 characters, split on character boundaries. */
function mr_encoded_words(string $value): string
{
    $chars = preg_split('//u', $value, -1, PREG_SPLIT_NO_EMPTY) ?: str_split($value);
    $words = [];
    $chunk = '';
    foreach ($chars as $c) {
        if (strlen($chunk) + strlen($c) > 45) {
            $words[] = '=?utf-8?b?' . base64_encode($chunk) . '?=';
            $chunk = '';
        }
        $chunk .= $c;
    }
    if ($chunk !== '' || !$words) {
        $words[] = '=?utf-8?b?' . base64_encode($chunk) . '?=';
    }
    return implode("\r\n ", $words);
}

/** Needs encoded-words: not printable ASCII, or a word too long to fold under 998. */
function mr_needs_encoding(string $value): bool
{
    if (preg_match('/[^\x20-\x7e\t]/', $value)) {
        return true;
    }
    foreach (preg_split('/[ \t]+/', $value) as $word) {
        if (strlen($word) > 900) {
            return true;
        }
    }
    return false;
}

/** "Name: value", folded at whitespace near 78 columns, or encoded-words when needed. */
function mr_header(string $name, string $value): string
{
    if (mr_needs_encoding($value)) {
        return "$name: " . mr_encoded_words($value) . "\r\n";
    }
    $line = "$name:";
    $out = '';
    foreach (explode(' ', $value) as $word) {
        if (strlen($line) + 1 + strlen($word) > 78 && $word !== '' && trim($line) !== "$name:") {
            $out .= $line . "\r\n";
            $line = '';
        }
        $line .= ' ' . $word;
    }
    return $out . $line . "\r\n";
}

/** [display name, addr-spec] of a mailbox, or null when it is not one. */
function mr_parse_mailbox(string $a): ?array
{
    $a = trim($a);
    if (preg_match('/^(.*)<([^<>]*)>$/s', $a, $m)) {
        $name = trim($m[1]);
        if (strlen($name) >= 2 && $name[0] === '"' && $name[-1] === '"') {
            $name = stripcslashes(substr($name, 1, -1));
        }
        $spec = trim($m[2]);
    } else {
        $name = '';
        $spec = $a;
    }
    if (!preg_match('/^[^\s@<>()\[\],;:"\\\\]+@[^\s@<>()\[\],;:"\\\\]+$/u', $spec) || str_starts_with($spec, '.') || str_contains($spec, '..')) {
        return null;
    }
    return [$name, $spec];
}

function mr_mailbox_header(array $boxes): string
{
    $parts = [];
    foreach ($boxes as [$name, $spec]) {
        if ($name === '') {
            $parts[] = $spec;
        } elseif (preg_match('/[^\x20-\x7e]/', $name) || strlen($name) > 900) {
            $parts[] = mr_encoded_words($name) . " <$spec>";
        } elseif (preg_match('/^[A-Za-z0-9!#$%&\'*+\/=?^_`{|}~ -]+$/', $name)) {
            $parts[] = "$name <$spec>";
        } else {
            $parts[] = '"' . addcslashes($name, '"\\') . "\" <$spec>";
        }
    }
    return implode(', ', $parts);
}

/** Envelope and bytes of a message, or a reason it cannot be built (reported failed). */
function mr_build_message(array $msg): array
{
    $from = mr_parse_mailbox($msg['from']);
    if ($from === null) {
        throw new InvalidArgumentException('invalid From address ' . mr_quote($msg['from']));
    }
    $boxes = ['to' => [], 'cc' => [], 'bcc' => []];
    foreach ($boxes as $kind => $_) {
        foreach ($msg[$kind] as $a) {
            $box = mr_parse_mailbox($a);
            if ($box === null) {
                throw new InvalidArgumentException('invalid ' . ucfirst($kind) . ' address ' . mr_quote($a));
            }
            $boxes[$kind][] = $box;
        }
    }
    $rcpts = array_map(fn ($b) => $b[1], array_merge($boxes['to'], $boxes['cc'], $boxes['bcc']));
    if (!$rcpts) {
        throw new InvalidArgumentException('no recipients');
    }
    $h = mr_header('Date', date('r'));
    $h .= 'From: ' . mr_mailbox_header([$from]) . "\r\n";
    if ($msg['reply_to'] !== null) {
        $rt = mr_parse_mailbox($msg['reply_to']);
        if ($rt === null) {
            throw new InvalidArgumentException('invalid Reply-To address ' . mr_quote($msg['reply_to']));
        }
        $h .= 'Reply-To: ' . mr_mailbox_header([$rt]) . "\r\n";
    }
    foreach (['to' => 'To', 'cc' => 'Cc'] as $kind => $name) {
        if ($boxes[$kind]) {
            // One mailbox per line keeps every line short.
            $h .= "$name: " . implode(",\r\n ", array_map(fn ($b) => mr_mailbox_header([$b]), $boxes[$kind])) . "\r\n";
        }
    }
    $h .= mr_header('Subject', $msg['subject']);
    $h .= mr_header('Message-ID', $msg['message_id_header']);
    $h .= "MIME-Version: 1.0\r\n";
    foreach ($msg['headers'] as [$name, $value]) {
        $h .= mr_header($name, $value);
    }
    $qp = fn (string $s) => quoted_printable_encode(mr_crlf($s));
    $text = $msg['text_body'];
    $html = $msg['html_body'];
    $textPart = fn (string $s, string $type) => "Content-Type: $type; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" . $qp($s) . "\r\n";
    if ($text !== null && $html !== null) {
        $b = 'mr-alt-' . bin2hex(random_bytes(12));
        $body = "Content-Type: multipart/alternative; boundary=\"$b\"\r\n\r\n--$b\r\n" . $textPart($text, 'text/plain') . "--$b\r\n" . $textPart($html, 'text/html') . "--$b--\r\n";
    } elseif ($html !== null) {
        $body = $textPart($html, 'text/html');
    } else {
        $body = $textPart($text ?? '', 'text/plain');
    }
    if ($msg['attachments']) {
        $b = 'mr-mix-' . bin2hex(random_bytes(12));
        $mixed = "Content-Type: multipart/mixed; boundary=\"$b\"\r\n\r\n--$b\r\n" . $body;
        foreach ($msg['attachments'] as $att) {
            if (!preg_match('#^[A-Za-z0-9!\#$&^_.+-]+/[A-Za-z0-9!\#$&^_.+-]+$#', $att['content_type'])) {
                throw new InvalidArgumentException('invalid attachment content type ' . mr_quote($att['content_type']));
            }
            $fn = mr_needs_encoding($att['filename']) || str_contains($att['filename'], '"') ? mr_encoded_words($att['filename']) : $att['filename'];
            $fn = str_replace(["\\", '"'], ["\\\\", '\\"'], $fn);
            $mixed .= "--$b\r\nContent-Type: {$att['content_type']}; name=\"$fn\"\r\nContent-Disposition: attachment; filename=\"$fn\"\r\n"
                . "Content-Transfer-Encoding: base64\r\n\r\n" . chunk_split(base64_encode($att['data']), 76, "\r\n");
        }
        $body = $mixed . "--$b--\r\n";
    }
    $bytes = mr_crlf($h . $body);
    $ascii = !preg_match('/[^\x00-\x7f]/', $from[1] . implode('', $rcpts));
    return ['sender' => $from[1], 'recipients' => $rcpts, 'bytes' => $bytes, 'smtputf8' => !$ascii];
}

/** DATA payload: CRLF line ends only, leading dots doubled, the terminator appended. */
function mr_data_payload(string $bytes): string
{
    $bytes = mr_crlf($bytes);
    if (!str_ends_with($bytes, "\r\n")) {
        $bytes .= "\r\n";
    }
    if (str_starts_with($bytes, '.')) {
        $bytes = '.' . $bytes;
    }
    return str_replace("\r\n.", "\r\n..", $bytes) . ".\r\n";
}

// --------------------------------------------------------------------------------------
// SMTP (the Rust runner's rules, src/smtp.rs)

/** No SMTP reply came: timeout, dropped or garbled connection. */
final class MrSmtpIo extends Exception
{
}

final class MrSmtp
{
    /** @var resource */
    private $sock;
    public array $ext = [];
    public bool $reused = false;

    private function __construct($sock, private array $options)
    {
        $this->sock = $sock;
    }

    /**
     * A logged-in session, or a result array (the message deferred or failed, with
     * 'give_up' set: the account does not work as configured or cannot be reached).
     */
    public static function open(array $acct, array $options): MrSmtp|array
    {
        $host = $acct['host'];
        $port = $acct['port'];
        $creds = $acct['username'] !== null && $acct['password'] !== null;
        if ($creds && $acct['security'] === 'none' && !mr_is_loopback_host($host)) {
            return mr_whole('Deferred', null, "refusing to send credentials in clear text to $host (use security starttls or tls)") + ['give_up' => true];
        }
        $ctx = stream_context_create(['ssl' => [
            'verify_peer' => true, 'verify_peer_name' => true, 'peer_name' => $host, 'allow_self_signed' => false,
            'SNI_enabled' => true, 'disable_compression' => true,
        ] + ($options['cafile'] !== null ? ['cafile' => $options['cafile']] : [])]);
        $target = (filter_var($host, FILTER_VALIDATE_IP, FILTER_FLAG_IPV6) !== false ? "[$host]" : $host) . ":$port";
        $sock = @stream_socket_client("tcp://$target", $errno, $errstr, $options['connect_timeout'], STREAM_CLIENT_CONNECT, $ctx);
        if ($sock === false) {
            return mr_whole('Deferred', null, "connecting to $host:$port: " . ($errstr ?: 'connection failed')) + ['give_up' => true];
        }
        stream_set_timeout($sock, $options['command_timeout']);
        $s = new MrSmtp($sock, $options);
        try {
            if ($acct['security'] === 'tls' && !$s->startTls()) {
                return mr_whole('Deferred', null, 'TLS handshake with ' . $host . ' failed: ' . mr_last_error()) + ['give_up' => true];
            }
            [$code, $text] = $s->reply();
            if ($code !== 220) {
                $s->abort();
                return mr_whole($code >= 500 ? 'Failed' : 'Deferred', $code, $text, "connecting to $host:$port") + ['give_up' => true];
            }
            $s->ehlo();
            if ($acct['security'] === 'starttls') {
                if (!isset($s->ext['STARTTLS'])) {
                    $s->abort();
                    return mr_whole('Deferred', null, 'STARTTLS required but not offered') + ['give_up' => true];
                }
                [$code, $text] = $s->command("STARTTLS\r\n");
                if ($code !== 220) {
                    $s->abort();
                    return mr_whole('Deferred', $code, $text, 'STARTTLS') + ['give_up' => true];
                }
                if (!$s->startTls()) {
                    return mr_whole('Deferred', null, 'STARTTLS: TLS handshake failed: ' . mr_last_error()) + ['give_up' => true];
                }
                $s->ehlo();
            }
            if ($creds) {
                $problem = $s->auth($acct['username'], $acct['password']);
                if ($problem !== null) {
                    $s->abort();
                    return mr_whole('Deferred', $problem[0], $problem[1], 'authentication failed') + ['give_up' => true];
                }
            }
            return $s;
        } catch (MrSmtpIo $e) {
            $s->abort();
            return mr_whole('Deferred', null, "connecting to $host:$port: " . $e->getMessage()) + ['give_up' => true];
        }
    }

    private function startTls(): bool
    {
        $method = STREAM_CRYPTO_METHOD_TLSv1_2_CLIENT | (defined('STREAM_CRYPTO_METHOD_TLSv1_3_CLIENT') ? STREAM_CRYPTO_METHOD_TLSv1_3_CLIENT : 0);
        $ok = @stream_socket_enable_crypto($this->sock, true, $method);
        if ($ok !== true) {
            $this->abort();
            return false;
        }
        return true;
    }

    private function ehlo(): void
    {
        [$code, $text, $lines] = $this->command('EHLO ' . $this->options['hello'] . "\r\n");
        if ($code !== 250) {
            throw new MrSmtpIo("EHLO refused: $code $text");
        }
        $this->ext = [];
        foreach (array_slice($lines, 1) as $line) {
            $words = preg_split('/[\s=]+/', trim($line));
            $this->ext[strtoupper($words[0])] = array_map('strtoupper', array_slice($words, 1));
        }
    }

    /** AUTH PLAIN, else LOGIN; null on success, else [code, text]. */
    private function auth(string $user, string $password): ?array
    {
        $mechanisms = $this->ext['AUTH'] ?? [];
        if (in_array('PLAIN', $mechanisms, true)) {
            [$code, $text] = $this->command('AUTH PLAIN ' . base64_encode("\0$user\0$password") . "\r\n");
            return $code === 235 ? null : [$code, $text];
        }
        if (in_array('LOGIN', $mechanisms, true)) {
            [$code, $text] = $this->command("AUTH LOGIN\r\n");
            if ($code === 334) {
                [$code, $text] = $this->command(base64_encode($user) . "\r\n");
            }
            if ($code === 334) {
                [$code, $text] = $this->command(base64_encode($password) . "\r\n");
            }
            return $code === 235 ? null : [$code, $text];
        }
        return [null, 'the server offers neither AUTH PLAIN nor AUTH LOGIN'];
    }

    /** Sends a command and reads its reply: [code, text, lines]. */
    public function command(string $line, ?int $timeout = null): array
    {
        if (@fwrite($this->sock, $line) !== strlen($line)) {
            $this->abort();
            throw new MrSmtpIo('connection lost');
        }
        return $this->reply($timeout);
    }

    /** One reply (multi-line joined with spaces, codes stripped). */
    public function reply(?int $timeout = null): array
    {
        stream_set_timeout($this->sock, $timeout ?? $this->options['command_timeout']);
        $lines = [];
        while (true) {
            $line = @fgets($this->sock, 8192);
            if ($line === false) {
                $meta = @stream_get_meta_data($this->sock);
                $this->abort();
                throw new MrSmtpIo(!empty($meta['timed_out']) ? 'timed out' : 'connection lost');
            }
            if (!preg_match('/^([2-5][0-9][0-9])([ -]?)(.*)$/s', rtrim($line, "\r\n"), $m)) {
                $this->abort();
                throw new MrSmtpIo('garbled reply from the server');
            }
            $lines[] = $m[3];
            if ($m[2] !== '-') {
                return [(int) $m[1], trim(implode(' ', $lines)), $lines];
            }
        }
    }

    public function write(string $bytes): void
    {
        $len = strlen($bytes);
        for ($off = 0; $off < $len;) {
            $n = @fwrite($this->sock, substr($bytes, $off, 65536));
            if ($n === false || $n === 0) {
                $this->abort();
                throw new MrSmtpIo('connection lost while sending the message');
            }
            $off += $n;
        }
    }

    /** RSET after an incomplete transaction; a session that does not answer is closed. */
    public function reset(): void
    {
        try {
            [$code] = $this->command("RSET\r\n");
            if ($code !== 250) {
                $this->abort();
            }
        } catch (MrSmtpIo) {
        }
    }

    public function alive(): bool
    {
        return is_resource($this->sock) && !feof($this->sock);
    }

    public function abort(): void
    {
        if (is_resource($this->sock)) {
            @fclose($this->sock);
        }
    }

    public function quit(): void
    {
        if ($this->alive()) {
            try {
                $this->command("QUIT\r\n", 5);
            } catch (MrSmtpIo) {
            }
        }
        $this->abort();
    }
}

/** The RFC 3463 enhanced status at the start of a reply text, e.g. "5.1.1". */
function mr_enhanced(?string $text): ?string
{
    if ($text === null || !preg_match('/^\s*(\S+)/', $text, $m)) {
        return null;
    }
    return preg_match('/^[245]\.[0-9]{1,3}\.[0-9]{1,3}$/', $m[1]) ? $m[1] : null;
}

/** A result for the message as a whole; `$context` prefixes the server's text. */
function mr_whole(string $outcome, ?int $code, string $text, ?string $context = null): array
{
    return ['outcome' => $outcome, 'smtp_code' => $code, 'enhanced_status' => mr_enhanced($text),
        'text' => $context === null ? $text : "$context: $text", 'recipients' => []];
}

function mr_class(int $code): string
{
    return $code >= 500 ? 'Failed' : 'Deferred';
}

/** Delivers one message over the account's session (opened, or reused once more). */
function mr_deliver(array $msg, array &$sessions, array &$givenUp, array $options): array
{
    try {
        $built = mr_build_message($msg);
    } catch (InvalidArgumentException $e) {
        return mr_whole('Failed', null, $e->getMessage());
    }
    $acct = $msg['account'];
    $key = implode("\0", [$acct['host'], $acct['port'], $acct['security'], $acct['username'] ?? '']);
    if (isset($givenUp[$key])) {
        return $givenUp[$key];
    }
    for ($attempt = 0; $attempt < 2; $attempt++) {
        $session = $sessions[$key] ?? null;
        if ($session === null || !$session->alive()) {
            $session = MrSmtp::open($acct, $options);
            if (is_array($session)) {
                unset($session['give_up']);
                $givenUp[$key] = $session;
                unset($sessions[$key]);
                return $session;
            }
            $sessions[$key] = $session;
            $fresh = true;
        } else {
            $fresh = false;
        }
        $result = mr_transaction($session, $built, $options);
        if ($result === 'retry' && !$fresh) {
            // A reused session the server ended before MAIL: nothing was sent.
            $session->abort();
            unset($sessions[$key]);
            continue;
        }
        if ($result === 'retry') {
            unset($sessions[$key]);
            return mr_whole('Deferred', null, 'MAIL FROM: the server closed the session');
        }
        if (!$session->alive()) {
            unset($sessions[$key]);
        }
        return $result;
    }
    return mr_whole('Deferred', null, 'MAIL FROM: the server closed the session');
}

/** One transaction: MAIL, each RCPT judged on its own, DATA, the message. */
function mr_transaction(MrSmtp $s, array $built, array $options): array|string
{
    if ($built['smtputf8'] && !isset($s->ext['SMTPUTF8'])) {
        return mr_whole('Failed', null, 'address is not ASCII and the server does not support SMTPUTF8');
    }
    try {
        [$code, $text] = $s->command('MAIL FROM:<' . $built['sender'] . '>' . ($built['smtputf8'] ? ' SMTPUTF8' : '') . "\r\n");
    } catch (MrSmtpIo $e) {
        return 'retry';
    }
    if ($code === 421) {
        $s->abort();
        return 'retry';
    }
    if ($code !== 250) {
        $s->reset();
        return mr_whole(mr_class($code), $code, $text, 'MAIL FROM');
    }
    $recipients = [];
    foreach ($built['recipients'] as $rcpt) {
        try {
            [$code, $text] = $s->command("RCPT TO:<$rcpt>\r\n");
        } catch (MrSmtpIo $e) {
            return mr_whole('Deferred', null, 'RCPT TO: ' . $e->getMessage());
        }
        $recipients[] = $code >= 200 && $code < 300
            ? ['address' => $rcpt, 'outcome' => 'Sent']
            : ['address' => $rcpt, 'outcome' => mr_class($code), 'smtp_code' => $code, 'enhanced_status' => mr_enhanced($text), 'text' => $text];
    }
    $accepted = count(array_filter($recipients, fn ($r) => $r['outcome'] === 'Sent'));
    if ($accepted === 0) {
        $s->reset();
        $first = $recipients[0];
        return ['outcome' => array_filter($recipients, fn ($r) => $r['outcome'] === 'Deferred') ? 'Deferred' : 'Failed',
            'smtp_code' => $first['smtp_code'] ?? null, 'enhanced_status' => $first['enhanced_status'] ?? null,
            'text' => 'all recipients refused', 'recipients' => $recipients];
    }
    // From here a failure concerns every accepted recipient alike.
    $afterData = function (string $outcome, ?int $code, string $reply, string $context) use ($recipients, $accepted): array {
        $d = mr_whole($outcome, $code, $reply, $context);
        $text = $d['text'];
        if ($accepted < count($recipients)) {
            $d['recipients'] = array_map(fn ($r) => $r['outcome'] === 'Sent'
                ? ['address' => $r['address'], 'outcome' => $outcome, 'smtp_code' => $code, 'enhanced_status' => $d['enhanced_status'], 'text' => $text]
                : $r, $recipients);
        }
        return $d;
    };
    try {
        [$code, $text] = $s->command("DATA\r\n");
    } catch (MrSmtpIo $e) {
        return $afterData('Deferred', null, $e->getMessage(), 'DATA refused');
    }
    if ($code !== 354) {
        $s->reset();
        return $afterData(mr_class($code), $code, $text, 'DATA refused');
    }
    try {
        $s->write(mr_data_payload($built['bytes']));
    } catch (MrSmtpIo $e) {
        return $afterData('Deferred', null, $e->getMessage(), 'DATA');
    }
    try {
        [$code, $text] = $s->reply($options['data_timeout']);
    } catch (MrSmtpIo $e) {
        // The message went out but no answer came: it may have been delivered, so it
        // is never retried silently (docs/quotas.md, "Unknown outcome").
        return $afterData('Unknown', null, $e->getMessage(), 'no answer after the final dot');
    }
    if ($code >= 200 && $code < 300) {
        return ['outcome' => 'Sent', 'smtp_code' => $code, 'enhanced_status' => mr_enhanced($text), 'text' => $text,
            'recipients' => $accepted < count($recipients) ? $recipients : []];
    }
    return $afterData(mr_class($code), $code, $text, 'message refused');
}

// --------------------------------------------------------------------------------------
// Send: every spooled batch, each outcome journalled (fsynced) before the next message

/**
 * Delivers spooled batches until done or `$deadline` (unix time; messages not started
 * by then are reported NotAttempted). Returns [batches finished, messages attempted,
 * whether the time ran out, messages past their lease deadline].
 */
function mr_send(string $dir, array $config, float $deadline): array
{
    $s = $config['settings'];
    $options = [
        'connect_timeout' => (int) $s['smtp_connect_timeout_seconds'],
        'command_timeout' => (int) $s['smtp_command_timeout_seconds'],
        'data_timeout' => (int) $s['smtp_data_timeout_seconds'],
        'hello' => preg_replace('/[^A-Za-z0-9.-]/', '', (string) gethostname()) ?: 'localhost',
        'cafile' => mr_ca_file($dir, $config),
    ];
    $policy = new MrPolicy($s['reply_policy']);
    $sessions = [];
    $givenUp = [];
    $finished = 0;
    $attempted = 0;
    $outOfTime = false;
    $late = 0;
    $rate = (float) $s['send_rate_per_second'];
    $nextStart = 0.0;
    try {
        foreach (mr_spooled($dir) as $id => $meta) {
            $id = (string) $id;
            $xmlPath = "$dir/spool/$id.xml";
            try {
                [$run, $refused] = mr_decode_job_run((string) file_get_contents($xmlPath));
            } catch (MrFault $f) {
                @rename($xmlPath, "$xmlPath.rejected");
                mr_log("spooled batch $id is unreadable, set aside: " . $f->getMessage());
                continue;
            }
            // Without a trustworthy lease clock nothing is sent late: all not attempted.
            $leaseEnd = is_array($meta) ? $meta['received_at'] + $meta['lease_seconds'] - (int) $s['lease_safety_margin_seconds'] : 0;
            $journalPath = "$dir/spool/$id.journal";
            [$journal, $done] = mr_open_journal($journalPath);
            $record = function (array $result) use ($journal, $journalPath, &$done) {
                mr_journal($journal, $journalPath, $result);
                $done[(string) $result['message_id']] = $result;
            };
            $base = fn ($id2, $token) => ['job_run_id' => $id, 'message_id' => $id2, 'lease_token' => $token, 'attempted_at' => mr_rfc3339(microtime(true))];
            foreach ($refused as $r) {
                if (!isset($done[(string) $r['id']])) {
                    $record($base($r['id'], $r['lease_token']) + mr_whole('Failed', null, 'the runner cannot accept this message: ' . $r['reason']));
                }
            }
            foreach ($run['messages'] as $msg) {
                if (isset($done[(string) $msg['id']])) {
                    continue;
                }
                $now = microtime(true);
                if ($now >= $leaseEnd) {
                    $late++;
                    $record($base($msg['id'], $msg['lease_token']) + mr_whole('NotAttempted', null, 'not attempted: the lease deadline passed'));
                    continue;
                }
                if ($now >= $deadline) {
                    // Reported at once (the dispatcher re-queues them) rather than held
                    // until a next run that a host without cron may not start.
                    $outOfTime = true;
                    $record($base($msg['id'], $msg['lease_token']) + mr_whole('NotAttempted', null, "not attempted: the run's time budget ended"));
                    continue;
                }
                $aside = $policy->skipReason($msg);
                if ($aside !== null) {
                    $record($base($msg['id'], $msg['lease_token']) + ['outcome' => 'NotAttempted', 'smtp_code' => $aside[1], 'enhanced_status' => $aside[2], 'text' => $aside[0], 'recipients' => []]);
                    continue;
                }
                if ($rate > 0) {
                    if ($nextStart > $leaseEnd) {
                        $record($base($msg['id'], $msg['lease_token']) + mr_whole('NotAttempted', null, 'not attempted: the send rate would start it after the lease deadline'));
                        continue;
                    }
                    if ($nextStart > microtime(true)) {
                        usleep((int) (($nextStart - microtime(true)) * 1e6));
                    }
                    $nextStart = max($nextStart, microtime(true)) + 1.0 / $rate;
                }
                $result = $base($msg['id'], $msg['lease_token']) + mr_deliver($msg, $sessions, $givenUp, $options);
                $policy->review($msg, $result);
                $attempted++;
                $record($result);
            }
            $complete = count($done) >= count($run['messages']) + count($refused);
            if ($complete) {
                $results = array_values($done);
                mr_write_atomic("$dir/outbox/$id.results", json_encode($results, JSON_UNESCAPED_SLASHES | JSON_INVALID_UTF8_SUBSTITUTE));
                fclose($journal);
                foreach (['xml', 'meta', 'journal'] as $ext) {
                    @unlink("$dir/spool/$id.$ext");
                }
                mr_fsync_dir("$dir/spool");
                $finished++;
            } else {
                fclose($journal);
            }
            if ($outOfTime) {
                break;
            }
        }
    } finally {
        foreach ($sessions as $session) {
            $session->quit();
        }
    }
    return [$finished, $attempted, $outOfTime, $late];
}

/** The CA bundle for SMTP: the system's roots plus smtp_ca_file (a private CA). */
function mr_ca_file(string $dir, array $config): ?string
{
    $extra = $config['smtp_ca_file'];
    if (!is_string($extra) || $extra === '') {
        return null;
    }
    $pem = @file_get_contents($extra);
    if ($pem === false || !str_contains($pem, '-----BEGIN CERTIFICATE-----')) {
        throw new MrExit(MR_EXIT_CONFIG, "smtp_ca_file $extra holds no PEM certificate");
    }
    $locations = openssl_get_cert_locations();
    $system = @file_get_contents($locations['default_cert_file'] ?? '') ?: '';
    $bundle = "$dir/ca-bundle.pem";
    $combined = $system . "\n" . $pem;
    if (@file_get_contents($bundle) !== $combined) {
        mr_write_atomic($bundle, $combined);
    }
    return $bundle;
}

// --------------------------------------------------------------------------------------
// Self-update: the PHP file announced in a signed JobRunnerConfigUpdate replaces this one

const MR_UPDATE_MAX_BYTES = 16777216;

/**
 * Installs the announced PHP runner when its version differs from this one: downloaded
 * (no redirects, at most 16 MiB), its SHA-256 checked against the signed announcement,
 * required to be a mailrun PHP runner, then renamed over this file. Any failure leaves
 * the file as it was. Returns what happened, or null when there is nothing to do.
 */
function mr_self_update(string $dir, array $config, string $target = __FILE__): ?string
{
    $sw = $config['settings']['software'] ?? null;
    if (!is_array($sw) || !str_ends_with((string) parse_url($sw['url'], PHP_URL_PATH), '.php')) {
        return null;
    }
    if ($sw['version'] === MR_SOFTWARE_VERSION || trim((string) @file_get_contents("$dir/php-update")) === $sw['sha256']) {
        return null;
    }
    if (($p = mr_check_url('software url', $sw['url'], (bool) $config['allow_plain_http'])) !== null) {
        return "self-update refused: $p";
    }
    $context = stream_context_create([
        'http' => ['timeout' => 600, 'follow_location' => 0, 'max_redirects' => 1, 'ignore_errors' => false],
        'ssl' => ['verify_peer' => true, 'verify_peer_name' => true],
    ]);
    $fh = @fopen($sw['url'], 'rb', false, $context);
    if ($fh === false) {
        return "self-update: cannot download {$sw['url']}: " . mr_last_error();
    }
    $data = '';
    while (!feof($fh) && strlen($data) <= MR_UPDATE_MAX_BYTES) {
        $piece = @fread($fh, 1 << 20);
        if ($piece === false) {
            break;
        }
        $data .= $piece;
    }
    $complete = feof($fh);
    fclose($fh);
    if (!$complete || strlen($data) > MR_UPDATE_MAX_BYTES) {
        return "self-update: the download of {$sw['url']} is cut off or larger than " . MR_UPDATE_MAX_BYTES . ' bytes';
    }
    $got = hash('sha256', $data);
    if (!hash_equals($sw['sha256'], $got)) {
        return "self-update refused: {$sw['url']} has SHA-256 $got, the dispatcher announced {$sw['sha256']}";
    }
    if (!str_starts_with($data, '<?php') || !str_contains($data, 'const MR_SOFTWARE_VERSION') || !str_contains($data, 'function mr_web_main')) {
        return "self-update refused: {$sw['url']} is not a mailrun PHP runner";
    }
    try {
        $tmp = dirname($target) . '/.' . basename($target) . '.update' . getmypid();
        if (@file_put_contents($tmp, $data) !== strlen($data)) {
            @unlink($tmp);
            throw new MrExit(MR_EXIT_TEMPFAIL, "cannot write $tmp (disk full?)");
        }
        @chmod($tmp, fileperms($target) & 0777);
        $fh = @fopen($tmp, 'r');
        if ($fh !== false) {
            mr_fsync($fh);
            fclose($fh);
        }
        if (!@rename($tmp, $target)) {
            @unlink($tmp);
            throw new MrExit(MR_EXIT_TEMPFAIL, "cannot replace $target: " . mr_last_error());
        }
        mr_fsync_dir(dirname($target));
        if (function_exists('opcache_invalidate')) {
            @opcache_invalidate($target, true);
        }
        mr_write_atomic("$dir/php-update", $sw['sha256'] . "\n");
    } catch (MrExit $e) {
        return 'self-update: ' . $e->getMessage();
    }
    return "self-update: installed PHP runner {$sw['version']} from {$sw['url']}";
}

// --------------------------------------------------------------------------------------
// The cycle: send what is left, poll, send, poll… (runner-admin cycle)

/**
 * One cycle within `$budget` seconds: delivers batches left by an interrupted run, then
 * polls (when the ready marker exists or `$force`), delivers, and polls again carrying
 * the results until the dispatcher answers empty, the time is up (one last report-only
 * poll) or the dispatcher is silent. The caller holds the lock. Returns an exit code.
 */
function mr_cycle(string $dir, array $config, int $budget, bool $force, ?callable $say = null): int
{
    $say ??= fn (string $m) => null;
    $start = microtime(true);
    $deadline = $start + $budget;
    $timeout = max(5, min(60, $budget));
    if (!$config['enabled']) {
        $say('runner is disabled');
        return MR_EXIT_NO_WORK;
    }
    mr_create_state($dir);
    // The running code stays the old one; the next request runs the new file.
    $update = mr_self_update($dir, $config);
    if ($update !== null) {
        $say($update);
        mr_log($update);
    }
    [, $sent, $outOfTime] = mr_send($dir, $config, $deadline);
    $worked = $sent > 0;
    $marker = @file_get_contents("$dir/ready");
    if ($marker === false && !$force && !mr_read_outbox($dir)) {
        $say('no ready marker; not polling');
        return $worked ? MR_EXIT_OK : MR_EXIT_NO_WORK;
    }
    while (true) {
        $outOfTime = $outOfTime || microtime(true) >= $deadline;
        try {
            $poll = mr_poll($dir, $config, $outOfTime ? 0 : null, $timeout);
        } catch (MrExit $e) {
            $say('poll: ' . $e->getMessage());
            return $e->exitCode;
        }
        if (isset($poll['spooled'])) {
            $say("spooled batch {$poll['spooled']} with {$poll['messages']} message(s); {$poll['acknowledged']} result(s) acknowledged");
            $worked = true;
            [, $sent, $outOfTime, $late] = mr_send($dir, $config, $deadline);
            if ($sent === 0 && $late > 0) {
                // Not one message could start before its lease deadline (a lease no
                // longer than lease_safety_margin_seconds): report them, do not fetch
                // the same work again at once.
                $say("no message of batch {$poll['spooled']} could start before its lease deadline (lease_safety_margin_seconds too large for the dispatcher's lease?)");
                try {
                    mr_poll($dir, $config, 0, $timeout);
                } catch (MrExit $e) {
                    $say('poll: ' . $e->getMessage());
                }
                return MR_EXIT_TEMPFAIL;
            }
            continue;
        }
        $say("no work; {$poll['acknowledged']} result(s) acknowledged");
        if ($outOfTime) {
            return MR_EXIT_OK;
        }
        // The hint is used up, unless a new one arrived meanwhile (answered `busy`):
        // then this cycle polls once more for it.
        $now = @file_get_contents("$dir/ready");
        if ($now !== false && $now !== $marker) {
            $marker = $now;
            continue;
        }
        if ($marker !== false) {
            @unlink("$dir/ready");
        }
        return $worked ? MR_EXIT_OK : MR_EXIT_NO_WORK;
    }
}

/** The cycle's time budget inside a web request: below max_execution_time. */
function mr_web_budget(array $config): int
{
    $budget = (int) $config['settings']['poll_interval_seconds'];
    $limit = (int) ini_get('max_execution_time');
    if ($limit > 0) {
        // max_execution_time counts CPU time on Linux, wall time elsewhere; leave room.
        $budget = min($budget, max(5, $limit - 5));
    }
    return max(1, $budget);
}

function mr_cycle_log(string $dir, string $line): void
{
    $path = "$dir/cycle.log";
    if (@filesize($path) > MR_CYCLE_LOG_MAX) {
        @unlink($path);
    }
    $old = umask(077);
    @file_put_contents($path, gmdate('Y-m-d\TH:i:s\Z') . " $line\n", FILE_APPEND);
    umask($old);
}

// --------------------------------------------------------------------------------------
// Web: the setup page, then the SOAP endpoint

function mr_html(string $s): string
{
    return htmlspecialchars($s, ENT_QUOTES | ENT_SUBSTITUTE, 'UTF-8');
}

function mr_page(int $status, string $title, string $html): void
{
    http_response_code($status);
    header('Content-Type: text/html; charset=utf-8');
    header('Cache-Control: no-store');
    header('X-Content-Type-Options: nosniff');
    header("Content-Security-Policy: default-src 'none'; form-action 'self'");
    $t = mr_html($title);
    echo "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>mailrun runner: $t</title></head>\n<body>\n<h1>mailrun runner: $t</h1>\n$html\n</body></html>\n";
}

/**
 * Inside the web root the state folder relies on .htaccess: fetch a probe file from it
 * over HTTP; the folder is usable only when the server refuses to serve it.
 */
function mr_state_is_fenced(string $dir): ?string
{
    if (!mr_inside_web($dir)) {
        return null;
    }
    $probe = 'probe-' . bin2hex(random_bytes(8)) . '.txt';
    if (@file_put_contents("$dir/$probe", 'mailrun-probe') === false) {
        return "cannot write to $dir";
    }
    @chmod("$dir/$probe", 0644);
    $scheme = (!empty($_SERVER['HTTPS']) && $_SERVER['HTTPS'] !== 'off') ? 'https' : 'http';
    $host = $_SERVER['SERVER_ADDR'] ?? '127.0.0.1';
    $host = str_contains($host, ':') ? "[$host]" : $host;
    $port = (int) ($_SERVER['SERVER_PORT'] ?? 80);
    $scriptUrlDir = rtrim(dirname(parse_url($_SERVER['REQUEST_URI'] ?? '/', PHP_URL_PATH) ?: '/'), '/');
    $relative = substr(mr_real($dir), strlen(mr_real(__DIR__)));
    $url = "$scheme://$host:$port$scriptUrlDir$relative/$probe";
    $ctx = stream_context_create(['http' => ['timeout' => 5, 'ignore_errors' => true, 'header' => 'Host: ' . ($_SERVER['HTTP_HOST'] ?? $host)],
        'ssl' => ['verify_peer' => false, 'verify_peer_name' => false]]);
    $got = @file_get_contents($url, false, $ctx);
    $status = isset($http_response_header[0]) && preg_match('#^HTTP/\S+\s+(\d{3})#', $http_response_header[0], $m) ? (int) $m[1] : 0;
    @unlink("$dir/$probe");
    if ($status === 0) {
        return "could not check that the web server refuses to serve $dir (no answer from $scheme://$host:$port)";
    }
    if ($status === 200 && $got === 'mailrun-probe') {
        return "the web server serves files from $dir: its .htaccess is not honoured (AllowOverride None?)";
    }
    return null;
}

function mr_web_main(): void
{
    $method = strtoupper($_SERVER['REQUEST_METHOD'] ?? 'GET');
    $query = $_SERVER['QUERY_STRING'] ?? '';
    try {
        $dir = mr_state_dir();
        $configured = is_file("$dir/runner.json");
        if ($method === 'POST' && $query === 'setup') {
            if ($configured) {
                mr_page(403, 'already set up', '<p>This runner is configured. To set it up again, delete runner.json from its state folder.</p>');
                return;
            }
            mr_setup($dir);
            return;
        }
        if ($method === 'GET' || $method === 'HEAD') {
            if ($configured) {
                mr_page(200, 'configured', '<p id="status">configured: this URL is the runner\'s endpoint (mailrun runner ' . MR_SOFTWARE_VERSION . ').</p>');
                return;
            }
            mr_setup_page($dir);
            return;
        }
        if ($method !== 'POST') {
            // GET shows the setup or status page, as dispatch-cgi's GET its status page.
            mr_refuse(405, new MrFault('UnknownOperation', "method $method is not allowed; use POST"), ['Allow' => 'GET, POST']);
            return;
        }
        mr_web_soap($dir);
    } catch (Throwable $e) {
        mr_log('error: ' . $e->getMessage());
        if (!headers_sent()) {
            mr_page(500, 'error', '<p>' . mr_html($e instanceof MrExit ? $e->getMessage() : 'internal error; see the web server\'s error log') . '</p>');
        }
    }
}

function mr_web_soap(string $dir): void
{
    // The refusals of protocol/faults.md made before the body is used, in its order.
    $length = trim((string) ($_SERVER['CONTENT_LENGTH'] ?? ''));
    if ($length !== '' && !ctype_digit($length)) {
        mr_refuse(400, new MrFault('MalformedXml', 'CONTENT_LENGTH is not a number'));
        return;
    }
    if ($length !== '' && (int) $length > MR_MAX_REQUEST_BYTES) {
        mr_refuse(413, new MrFault('TooLarge', 'request body exceeds the limit of ' . MR_MAX_REQUEST_BYTES . ' bytes'));
        return;
    }
    if ($length === '') {
        mr_refuse(411, new MrFault('MalformedXml', 'a request body needs a Content-Length'));
        return;
    }
    $body = (string) file_get_contents('php://input', false, null, 0, MR_MAX_REQUEST_BYTES);
    if (strlen($body) < (int) $length) {
        mr_refuse(400, new MrFault('MalformedXml', "could not read the $length-byte request body: the body ended after " . strlen($body) . ' bytes'));
        return;
    }
    $path = parse_url($_SERVER['REQUEST_URI'] ?? '', PHP_URL_PATH) ?: (($_SERVER['SCRIPT_NAME'] ?? '') . ($_SERVER['PATH_INFO'] ?? ''));
    $header = function (string $name): ?string {
        $v = $_SERVER['HTTP_' . strtoupper(str_replace('-', '_', $name))] ?? null;
        return is_string($v) ? $v : null;
    };
    if (is_dir($dir) && ($why = mr_fence_problem($dir)) !== null) {
        mr_log($why);
        [$status, $headers, $out] = [500, ['SOAPAction' => '"' . MR_ACTION_PREFIX . 'Fault"'], mr_fault_body(new MrFault('Internal', "not configured; see the endpoint's log"))];
        $startCycle = false;
    } else {
        [$status, $headers, $out, $startCycle] = mr_handle_soap($dir, $path, $header, $body);
    }
    if (!$startCycle) {
        mr_send_response($status, $headers, $out);
        return;
    }
    // Answer now, deliver after: the dispatcher is not kept waiting, and a host without
    // cron still delivers (within max_execution_time).
    ignore_user_abort(true);
    $config = mr_load_config($dir);
    $budget = mr_web_budget($config);
    @set_time_limit($budget + 30);
    mr_send_response($status, $headers + ['Connection' => 'close'], $out);
    while (ob_get_level() > 0) {
        @ob_end_flush();
    }
    flush();
    if (function_exists('fastcgi_finish_request')) {
        fastcgi_finish_request();
    } elseif (function_exists('litespeed_finish_request')) {
        litespeed_finish_request();
    }
    mr_cycle_log($dir, 'cycle started after JobRunnerReady (pid ' . getmypid() . ", budget {$budget} s)");
    try {
        $code = mr_cycle($dir, $config, $budget, false, fn ($m) => mr_cycle_log($dir, $m));
        mr_cycle_log($dir, "cycle ended (exit $code)");
    } catch (Throwable $e) {
        mr_cycle_log($dir, 'cycle failed: ' . $e->getMessage());
        mr_log('cycle failed: ' . $e->getMessage());
    }
}

/** The state folder inside the web root must be fenced off (cached once it was). */
function mr_fence_problem(string $dir): ?string
{
    if (!mr_inside_web($dir) || is_file("$dir/.fenced")) {
        return null;
    }
    $why = mr_state_is_fenced($dir);
    if ($why === null) {
        @touch("$dir/.fenced");
    }
    return $why;
}

/** An unsigned fault answer made before the request is read as SOAP. */
function mr_refuse(int $status, MrFault $fault, array $headers = []): void
{
    mr_send_response($status, ['SOAPAction' => '"' . MR_ACTION_PREFIX . 'Fault"'] + $headers, mr_fault_body($fault));
}

function mr_send_response(int $status, array $headers, string $body): void
{
    http_response_code($status);
    header('Content-Type: text/xml; charset=utf-8');
    foreach ($headers as $n => $v) {
        header("$n: $v");
    }
    header('Content-Length: ' . strlen($body));
    echo $body;
}

function mr_setup_page(string $dir): void
{
    mr_create_state($dir);
    $why = mr_fence_problem($dir);
    if ($why !== null) {
        mr_log($why);
        mr_page(500, 'unsafe state folder', '<p>' . mr_html("No writable folder outside the web root was found, and $why. Set MAILRUN_RUNNER_DIR in the web server's environment (for Apache: SetEnv) to a folder outside the web root, or allow .htaccess files (AllowOverride All), then reload.") . '</p>');
        return;
    }
    $tokenPath = "$dir/setup-token";
    if (!is_file($tokenPath)) {
        mr_write_atomic($tokenPath, bin2hex(random_bytes(16)) . "\n");
        $token = trim((string) file_get_contents($tokenPath));
        $tokenHtml = '<p>Setup token (shown once, on this visit only): <code id="token">' . mr_html($token) . '</code></p>';
    } else {
        $tokenHtml = '<p>The setup token was shown on the first visit. Lost it? Delete <code>setup-token</code> from the state folder (FTP) and reload this page for a new one.</p>';
    }
    $warn = mr_inside_web($dir) ? '<p><strong>Warning:</strong> no writable folder outside the web root was found, so the state folder is inside it, fenced off by .htaccess (checked: the server refuses to serve it). Set MAILRUN_RUNNER_DIR to a folder outside the web root if you can.</p>' : '';
    $cron = '* * * * * php ' . __FILE__ . ' cycle --max-seconds 55';
    mr_page(200, 'ready', '<p id="status">ready: mailrun runner ' . MR_SOFTWARE_VERSION . ' keeps its state in <code>' . mr_html($dir) . "</code>.</p>\n$warn\n$tokenHtml
<h2>Set it up</h2>
<p>Register this runner at the dispatcher (<code>dispatch-admin runner add</code>, with this page's URL as its endpoint), then send its id, key id and key here:</p>
<form method=\"post\" action=\"?setup\" enctype=\"text/plain\">
<p><label>Setup token <input name=\"token\" size=\"34\" autocomplete=\"off\"></label></p>
<p><label>Dispatcher URL <input name=\"dispatcher_url\" size=\"60\"></label></p>
<p><label>Runner id <input name=\"runner_id\"></label></p>
<p><label>Key id <input name=\"key_id\"></label></p>
<p><label>Key (64 hex characters) <input name=\"key\" size=\"66\" autocomplete=\"off\"></label></p>
<p><button type=\"submit\">Set up</button></p>
</form>
<p>No cron is needed: the dispatcher's JobRunnerReady starts delivery in the request that carries it. Where cron exists, this line also delivers mail left over:</p>
<pre id=\"crontab\">" . mr_html($cron) . '</pre>');
}

/** The setup form (text/plain name=value lines, or urlencoded), at most 4 KiB. */
function mr_setup(string $dir): void
{
    $length = (int) ($_SERVER['CONTENT_LENGTH'] ?? 0);
    if ($length > 4096) {
        mr_page(413, 'error', '<p>the setup form is limited to 4096 bytes</p>');
        return;
    }
    $tokenPath = "$dir/setup-token";
    if (!is_file($tokenPath)) {
        mr_page(403, 'error', '<p>no setup token: reload the page for one</p>');
        return;
    }
    $raw = (string) file_get_contents('php://input', false, null, 0, 4096);
    $form = [];
    if (str_starts_with(strtolower($_SERVER['CONTENT_TYPE'] ?? ''), 'application/x-www-form-urlencoded')) {
        parse_str($raw, $form);
    } else {
        foreach (preg_split("/\r?\n/", $raw) as $line) {
            if (str_contains($line, '=')) {
                [$n, $v] = explode('=', $line, 2);
                $form[$n] ??= $v;
            }
        }
    }
    $get = fn (string $n) => is_string($form[$n] ?? null) ? trim($form[$n]) : '';
    $want = trim((string) file_get_contents($tokenPath));
    if ($get('token') === '' || !hash_equals($want, $get('token'))) {
        mr_page(403, 'error', '<p>wrong setup token</p>');
        return;
    }
    $allowPlain = $get('allow_plain_http') === 'yes';
    $problems = [];
    $url = $get('dispatcher_url');
    if (($p = mr_check_url('dispatcher_url', $url, $allowPlain)) !== null) {
        $problems[] = $p;
    }
    foreach (['runner_id', 'key_id'] as $n) {
        if (!preg_match('/^[!-~]{1,128}$/', $get($n)) || str_contains($get($n), '"')) {
            $problems[] = "$n must be 1-128 printable characters without spaces or quotes";
        }
    }
    if (!preg_match('/^[0-9a-fA-F]{64}$/', $get('key'))) {
        $problems[] = 'key must be 64 hex characters';
    }
    if ($problems) {
        mr_page(400, 'error', '<p>setup refused: ' . mr_html(implode('; ', $problems)) . '</p>');
        return;
    }
    $config = [
        'runner_id' => $get('runner_id'), 'dispatcher_url' => $url, 'key_id' => $get('key_id'), 'key' => strtolower($get('key')),
        'previous_key_id' => null, 'previous_key' => null, 'allow_plain_http' => $allowPlain, 'smtp_ca_file' => null, 'enabled' => true,
        'settings' => mr_default_settings(),
    ];
    mr_create_state($dir);
    mr_save_config($dir, $config);
    @unlink($tokenPath);
    mr_page(200, 'configured', '<p id="status">configured: runner ' . mr_html($config['runner_id']) . ' will poll ' . mr_html($url) . '.</p><p>This URL is now the runner\'s endpoint.</p>');
}

// --------------------------------------------------------------------------------------
// Command line: php mailrun-runner.php cycle | init | status

function mr_cli(array $argv): int
{
    $args = array_slice($argv, 1);
    $cmd = array_shift($args) ?? '';
    $opts = ['state-dir' => null, 'max-seconds' => null, 'force' => false, 'verbose' => false, 'allow-plain-http' => false];
    for ($i = 0; $i < count($args); $i++) {
        $a = $args[$i];
        if (in_array($a, ['--force', '--verbose', '-v', '--allow-plain-http'], true)) {
            $opts[ltrim($a === '-v' ? '--verbose' : $a, '-')] = true;
        } elseif (str_starts_with($a, '--') && isset($args[$i + 1])) {
            $opts[substr($a, 2)] = $args[++$i];
        } else {
            fwrite(STDERR, "mailrun-runner: unknown argument $a\n");
            return MR_EXIT_USAGE;
        }
    }
    $dir = mr_state_dir($opts['state-dir']);
    $say = $opts['verbose'] ? fn (string $m) => fwrite(STDERR, "mailrun-runner: $m\n") : fn (string $m) => null;
    try {
        switch ($cmd) {
            case 'cycle':
                $config = mr_load_config($dir);
                mr_create_state($dir);
                if (mr_try_lock($dir) === null) {
                    $say('another run holds the lock');
                    return MR_EXIT_NO_WORK;
                }
                $budget = (int) ($opts['max-seconds'] ?? $config['settings']['poll_interval_seconds']);
                return mr_cycle($dir, $config, max(1, $budget), (bool) $opts['force'], $say);
            case 'init':
                // `--key-file -` (or none): the key on stdin, never on the command line.
                $keyFile = $opts['key-file'] ?? '-';
                $key = trim((string) @file_get_contents($keyFile === '-' ? 'php://stdin' : $keyFile));
                $config = [
                    'runner_id' => (string) ($opts['runner-id'] ?? ''), 'dispatcher_url' => (string) ($opts['dispatcher-url'] ?? ''),
                    'key_id' => (string) ($opts['key-id'] ?? ''), 'key' => strtolower($key), 'previous_key_id' => null, 'previous_key' => null,
                    'allow_plain_http' => (bool) $opts['allow-plain-http'], 'smtp_ca_file' => $opts['smtp-ca-file'] ?? null, 'enabled' => true,
                    'settings' => mr_default_settings(),
                ];
                if (!preg_match('/^[!-~]{1,128}$/', $config['runner_id']) || !preg_match('/^[!-~]{1,128}$/', $config['key_id'])
                    || !preg_match('/^[0-9a-f]{64}$/', $config['key'])) {
                    fwrite(STDERR, "mailrun-runner: init needs --dispatcher-url URL --runner-id ID --key-id KID and a 64-hex key (--key-file FILE, or - for stdin)\n");
                    return MR_EXIT_USAGE;
                }
                if (($p = mr_check_url('dispatcher_url', $config['dispatcher_url'], $config['allow_plain_http'])) !== null) {
                    fwrite(STDERR, "mailrun-runner: $p\n");
                    return MR_EXIT_USAGE;
                }
                mr_create_state($dir);
                mr_save_config($dir, $config);
                @unlink("$dir/setup-token");
                fwrite(STDERR, "mailrun-runner: configured runner {$config['runner_id']} in $dir\n");
                return MR_EXIT_OK;
            case 'status':
                $config = mr_load_config($dir);
                echo json_encode([
                    'state_dir' => $dir, 'runner_id' => $config['runner_id'], 'software_version' => MR_SOFTWARE_VERSION,
                    'config_version' => $config['settings']['version'], 'spooled' => array_keys(mr_spooled($dir)),
                    'outbox' => array_map('count', mr_read_outbox($dir)), 'ready' => is_file("$dir/ready"),
                ], JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES) . "\n";
                return MR_EXIT_OK;
            default:
                fwrite(STDERR, "usage: php mailrun-runner.php cycle [--max-seconds N] [--force] [--verbose] [--state-dir DIR]\n"
                    . "       php mailrun-runner.php init --dispatcher-url URL --runner-id ID --key-id KID [--key-file FILE] [--allow-plain-http] [--state-dir DIR]\n"
                    . "       php mailrun-runner.php status [--state-dir DIR]\n");
                return MR_EXIT_USAGE;
        }
    } catch (MrExit $e) {
        fwrite(STDERR, 'mailrun-runner: ' . $e->getMessage() . "\n");
        return $e->exitCode;
    }
}

// The tests include this file as a library (MAILRUN_RUNNER_LIBRARY) to check the signing
// rule against docs/signing.md's known answer.
if (!defined('MAILRUN_RUNNER_LIBRARY')) {
    if (PHP_SAPI === 'cli') {
        exit(mr_cli($argv));
    }
    mr_web_main();
}
