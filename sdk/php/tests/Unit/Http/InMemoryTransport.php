<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Tests\Unit\Http;

use Autoheal\Sdk\Http\Response;
use Autoheal\Sdk\Http\Transport;
use Autoheal\Sdk\Http\TransportException;

/** Scripted answers for the Client's retry logic (the one test that does not need a server). */
final class InMemoryTransport implements Transport
{
    /** @var list<Response|TransportException> */
    private array $answers;
    /** @var list<array{method: string, url: string, headers: array<string, string>, body: ?string}> */
    public array $requests = [];

    /** @param list<Response|TransportException> $answers */
    public function __construct(array $answers)
    {
        $this->answers = $answers;
    }

    public function request(string $method, string $url, array $headers, ?string $body): Response
    {
        $this->requests[] = ['method' => $method, 'url' => $url, 'headers' => $headers, 'body' => $body];
        $answer = array_shift($this->answers);
        if ($answer === null) {
            throw new \LogicException('no answer scripted');
        }
        if ($answer instanceof TransportException) {
            throw $answer;
        }
        return $answer;
    }
}
