<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Http;

/** ext-curl, where installed: connection reuse within a process and separate connect timeouts. */
final class CurlTransport implements Transport
{
    private TransportOptions $options;

    public function __construct(?TransportOptions $options = null)
    {
        if (!function_exists('curl_init')) {
            throw new \LogicException('CurlTransport needs ext-curl; use StreamTransport');
        }
        $this->options = $options ?? new TransportOptions();
    }

    public static function isAvailable(): bool
    {
        return function_exists('curl_init');
    }

    public function request(string $method, string $url, array $headers, ?string $body): Response
    {
        TransportOptions::checkRequest($method, $url, $headers);
        $lines = [];
        foreach ($headers as $name => $value) {
            $lines[] = $name . ': ' . $value;
        }
        $max = $this->options->maxResponseBytes();
        $received = '';
        $tooLarge = false;
        $headerLines = [];
        $handle = curl_init();
        if ($handle === false) {
            throw new TransportException('curl_init failed');
        }
        $options = [
            CURLOPT_URL => $url,
            CURLOPT_CUSTOMREQUEST => $method,
            CURLOPT_HTTPHEADER => $lines,
            CURLOPT_FOLLOWLOCATION => false,
            CURLOPT_PROTOCOLS => CURLPROTO_HTTP | CURLPROTO_HTTPS,
            CURLOPT_CONNECTTIMEOUT_MS => (int) ($this->options->connectTimeout() * 1000),
            CURLOPT_TIMEOUT_MS => (int) ($this->options->timeout() * 1000),
            CURLOPT_SSL_VERIFYPEER => true,
            CURLOPT_SSL_VERIFYHOST => 2,
            CURLOPT_HEADERFUNCTION => static function ($h, string $line) use (&$headerLines): int {
                $trimmed = rtrim($line, "\r\n");
                if (preg_match('#^HTTP/\d(?:\.\d)? \d{3}#', $trimmed) === 1) {
                    $headerLines = [];   // a new status line: 100 Continue came before
                } elseif ($trimmed !== '') {
                    $headerLines[] = $trimmed;
                }
                return strlen($line);
            },
            CURLOPT_WRITEFUNCTION => static function ($h, string $chunk) use (&$received, &$tooLarge, $max): int {
                if (strlen($received) + strlen($chunk) > $max) {
                    $tooLarge = true;
                    return 0;   // aborts the transfer
                }
                $received .= $chunk;
                return strlen($chunk);
            },
        ];
        if ($body !== null) {
            $options[CURLOPT_POSTFIELDS] = $body;
        }
        curl_setopt_array($handle, $options);
        $ok = curl_exec($handle);
        $status = (int) curl_getinfo($handle, CURLINFO_RESPONSE_CODE);
        $error = curl_error($handle);
        curl_close($handle);
        if ($tooLarge) {
            throw new TransportException($method . ' ' . $url . ': answer larger than ' . $max . ' bytes');
        }
        if ($ok === false || $status === 0) {
            throw new TransportException($method . ' ' . $url . ': ' . ($error !== '' ? $error : 'no answer'));
        }
        return new Response($status, Response::parseHeaderLines($headerLines), $received);
    }
}
