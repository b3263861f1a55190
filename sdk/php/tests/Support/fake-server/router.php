<?php

declare(strict_types=1);

// A stand-in for the autoheal server's plugin endpoints, for `php -S` (FakeServer.php). Its
// state is a JSON file (FAKE_AUTOHEAL_STATE) that tests script and inspect: the commands
// the next poll hands out, the bundles it serves, failures to answer, and every request
// and ack it received.

$stateFile = (string) getenv('FAKE_AUTOHEAL_STATE');
$lock = fopen($stateFile . '.lock', 'c');
flock($lock, LOCK_EX);
$state = json_decode((string) file_get_contents($stateFile), true);

$method = $_SERVER['REQUEST_METHOD'];
$path = (string) parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH);
$body = (string) file_get_contents('php://input');
$state['requests'][] = ['method' => $method, 'path' => $path, 'body' => $body, 'content_type' => $_SERVER['CONTENT_TYPE'] ?? null];

function answer(array &$state, $lock, string $file, int $status, $json, array $headers = []): void
{
    file_put_contents($file, json_encode($state, JSON_UNESCAPED_SLASHES | JSON_PRETTY_PRINT));
    flock($lock, LOCK_UN);
    http_response_code($status);
    foreach ($headers as $name => $value) {
        header($name . ': ' . $value);
    }
    if (is_string($json)) {
        header('Content-Type: application/json');
        echo $json;
    } elseif ($json !== null) {
        header('Content-Type: application/json');
        echo json_encode($json, JSON_UNESCAPED_SLASHES);
    }
    exit;
}

function error(int $status, string $code, string $message): array
{
    return ['error' => ['code' => $code, 'message' => $message, 'field' => null]];
}

// Scripted failures: the first entry whose prefix matches "METHOD path" is used once.
foreach ($state['failures'] as $i => $failure) {
    if (strpos($method . ' ' . $path, $failure['match']) === 0) {
        array_splice($state['failures'], $i, 1);
        answer($state, $lock, $stateFile, $failure['status'], error($failure['status'], 'scripted', 'scripted failure'), $failure['headers'] ?? []);
    }
}

if ($path === '/redirect') {
    answer($state, $lock, $stateFile, 302, null, ['Location' => '/api/v1/plugins/heartbeat']);
}
if (($_SERVER['HTTP_AUTHORIZATION'] ?? '') !== 'Bearer ' . $state['key']) {
    answer($state, $lock, $stateFile, 401, error(401, 'unauthorized', 'no valid credential'));
}

if ($method === 'POST' && $path === '/api/v1/plugins/heartbeat') {
    $state['heartbeats'][] = json_decode($body, true);
    answer($state, $lock, $stateFile, 200, [
        'status' => 'ok',
        'installation_id' => $state['installation_id'],
        'toggles' => (object) $state['toggles'],
        'notices' => $state['notices'],
        'flags' => (object) ['autoheal.auto_apply' => true],
    ]);
}
if ($method === 'GET' && preg_match('#^/api/v1/plugins/autoheal/commands/([^/]+)$#', $path, $m) === 1) {
    if (rawurldecode($m[1]) !== $state['installation_id']) {
        answer($state, $lock, $stateFile, 404, error(404, 'not_found', 'no such installation'));
    }
    $items = $state['queue'];
    $state['queue'] = [];   // leased
    $state['handed_out'] = array_merge($state['handed_out'], $items);
    answer($state, $lock, $stateFile, 200, '[' . implode(',', $items) . ']');
}
if ($method === 'POST' && preg_match('#^/api/v1/plugins/autoheal/commands/([^/]+)/ack$#', $path, $m) === 1) {
    $id = rawurldecode($m[1]);
    $ack = json_decode($body, true);
    if (isset($state['acks'][$id])) {
        if ($state['acks'][$id] != $ack) {
            answer($state, $lock, $stateFile, 409, error(409, 'conflict', 'a different ack was recorded'));
        }
        answer($state, $lock, $stateFile, 200, ['status' => 'ok', 'repeated' => true]);
    }
    $state['acks'][$id] = $ack;
    answer($state, $lock, $stateFile, 200, ['status' => 'ok', 'repeated' => false]);
}
if ($method === 'GET' && preg_match('#^/api/v1/plugins/autoheal/bundles/([^/]+)/([^/]+)$#', $path, $m) === 1) {
    $key = rawurldecode($m[1]) . '/' . rawurldecode($m[2]);
    if (!isset($state['bundles'][$key])) {
        answer($state, $lock, $stateFile, 404, error(404, 'not_found', 'no such bundle'));
    }
    answer($state, $lock, $stateFile, 200, base64_decode($state['bundles'][$key]), ['ETag' => '"' . hash('sha256', base64_decode($state['bundles'][$key])) . '"']);
}
if ($method === 'POST' && $path === '/api/v1/plugins/event') {
    $state['events'][] = json_decode($body, true);
    answer($state, $lock, $stateFile, 201, ['status' => 'ok', 'event_id' => 'ev-' . count($state['events']), 'installation_id' => $state['installation_id'], 'blocked' => false]);
}
if ($method === 'POST' && $path === '/api/v1/plugins/interop/event') {
    $event = json_decode($body, true);
    $state['interop'][] = $event;
    if ($event['event_type'] === 'unknown_event') {
        answer($state, $lock, $stateFile, 202, ['status' => 'failed', 'event_id' => 'ie-' . count($state['interop']), 'error' => ['code' => 'unmapped', 'message' => 'nothing maps it']]);
    }
    answer($state, $lock, $stateFile, 201, ['status' => 'ack', 'event_id' => 'ie-' . count($state['interop']), 'normalized' => ['type' => 'checkout.created']]);
}
if ($method === 'POST' && preg_match('#^/api/v1/plugins/notifications/([^/]+)/ack$#', $path, $m) === 1) {
    $state['notice_acks'][] = rawurldecode($m[1]);
    answer($state, $lock, $stateFile, 200, ['status' => 'ok']);
}
answer($state, $lock, $stateFile, 404, error(404, 'not_found', 'no such route'));
