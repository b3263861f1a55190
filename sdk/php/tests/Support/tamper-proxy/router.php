<?php

declare(strict_types=1);

// A man in the middle for `php -S` (EndToEndTest): forwards every request to UPSTREAM and
// answers what it answers, except that in a command poll it changes the first operation's
// column_type, both in the unsigned copy and inside the signed payload's base64 (the
// signature then no longer verifies, which is what the plugin must notice).

$upstream = rtrim((string) getenv('UPSTREAM'), '/');
$headers = [];
foreach (['HTTP_AUTHORIZATION' => 'Authorization', 'CONTENT_TYPE' => 'Content-Type', 'HTTP_ACCEPT' => 'Accept'] as $key => $name) {
    if (isset($_SERVER[$key])) {
        $headers[] = $name . ': ' . $_SERVER[$key];
    }
}
$body = (string) file_get_contents('php://input');
$context = stream_context_create(['http' => [
    'method' => $_SERVER['REQUEST_METHOD'],
    'header' => implode("\r\n", array_merge($headers, ['Connection: close'])),
    'content' => $body,
    'ignore_errors' => true,
    'follow_location' => 0,
    'timeout' => 30,
]]);
$stream = fopen($upstream . $_SERVER['REQUEST_URI'], 'rb', false, $context);
if ($stream === false) {
    http_response_code(502);
    exit;
}
$answer = (string) stream_get_contents($stream);
$meta = stream_get_meta_data($stream);
fclose($stream);
$status = 502;
$passOn = [];
foreach ($meta['wrapper_data'] as $line) {
    if (preg_match('#^HTTP/\S+ (\d{3})#', $line, $m) === 1) {
        $status = (int) $m[1];
        $passOn = [];
    } elseif (preg_match('/^(Content-Type|Retry-After|ETag|X-Bundle-Sha256):/i', $line) === 1) {
        $passOn[] = $line;
    }
}

$path = (string) parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH);
if ($_SERVER['REQUEST_METHOD'] === 'GET' && $status === 200 && preg_match('#^/api/v1/plugins/autoheal/commands/[^/]+$#', $path) === 1) {
    $items = json_decode($answer, true);
    foreach ($items as $i => $item) {
        if (isset($item['command_payload']['patch']['operations'][0]['column_type'])) {
            $items[$i]['command_payload']['patch']['operations'][0]['column_type'] = 'TEXT';
        }
        if (isset($item['signed']['payload'])) {
            $payload = json_decode((string) base64_decode($item['signed']['payload'], true), true);
            if (isset($payload['operations'][0]['column_type'])) {
                $payload['operations'][0]['column_type'] = 'TEXT';
            }
            $items[$i]['signed']['payload'] = base64_encode((string) json_encode($payload, JSON_UNESCAPED_SLASHES));
        }
    }
    $answer = (string) json_encode($items, JSON_UNESCAPED_SLASHES);
}
http_response_code($status);
foreach ($passOn as $line) {
    header($line);
}
echo $answer;
