<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Http;

use Autoheal\Sdk\Support\ErrorTrap;

/** PHP's own http:// stream wrapper: needs no extension, works on any host. */
final class StreamTransport implements Transport
{
    private TransportOptions $options;

    public function __construct(?TransportOptions $options = null)
    {
        $this->options = $options ?? new TransportOptions();
    }

    public function request(string $method, string $url, array $headers, ?string $body): Response
    {
        TransportOptions::checkRequest($method, $url, $headers);
        $lines = [];
        foreach ($headers as $name => $value) {
            $lines[] = $name . ': ' . $value;
        }
        $lines[] = 'Connection: close';
        if ($body !== null) {
            $lines[] = 'Content-Length: ' . strlen($body);
        }
        $context = stream_context_create([
            'http' => [
                'method' => $method,
                'header' => implode("\r\n", $lines),
                'content' => $body ?? '',
                // Every status is an answer for the Client to judge, not a failed fopen.
                'ignore_errors' => true,
                'follow_location' => 0,
                'timeout' => $this->options->timeout(),
                'protocol_version' => 1.1,
            ],
            'ssl' => ['verify_peer' => true, 'verify_peer_name' => true],
        ]);
        $fail = static fn (string $why): TransportException => new TransportException($method . ' ' . self::redact($url) . ': ' . $why);
        $stream = ErrorTrap::call(static fn () => fopen($url, 'rb', false, $context), $fail);
        if ($stream === false) {
            throw $fail('no answer');
        }
        try {
            $max = $this->options->maxResponseBytes();
            $data = ErrorTrap::call(static fn () => stream_get_contents($stream, $max + 1), $fail);
            $meta = stream_get_meta_data($stream);
        } finally {
            fclose($stream);
        }
        if ($data === false || !empty($meta['timed_out'])) {
            throw $fail('timed out reading the answer');
        }
        if (strlen($data) > $max) {
            throw $fail('answer larger than ' . $max . ' bytes');
        }
        /** @var list<string> $raw */
        $raw = is_array($meta['wrapper_data'] ?? null) ? $meta['wrapper_data'] : [];
        return self::response($raw, $data, $fail);
    }

    /**
     * The wrapper lists every status line it saw (a 100 Continue first, say): the last one
     * and the headers after it are the answer's.
     *
     * @param list<string> $raw
     * @param callable(string): TransportException $fail
     */
    private static function response(array $raw, string $body, callable $fail): Response
    {
        $status = null;
        $lines = [];
        foreach ($raw as $line) {
            if (preg_match('#^HTTP/\d(?:\.\d)? (\d{3})#', $line, $m) === 1) {
                $status = (int) $m[1];
                $lines = [];
            } else {
                $lines[] = $line;
            }
        }
        if ($status === null) {
            throw $fail('answer without an HTTP status line');
        }
        return new Response($status, Response::parseHeaderLines($lines), $body);
    }

    /** The URL without its query, which is never needed to understand a network failure. */
    private static function redact(string $url): string
    {
        $q = strpos($url, '?');
        return $q === false ? $url : substr($url, 0, $q);
    }
}
