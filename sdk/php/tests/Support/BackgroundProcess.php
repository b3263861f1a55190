<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Tests\Support;

/**
 * A process a test starts (php -S, the autoheal server) and stops by its own handle — never
 * by name. Its output goes to a log file the test can show when something fails.
 */
final class BackgroundProcess
{
    /** @var resource */
    private $process;
    private string $log;

    /**
     * @param list<string> $command
     * @param array<string, string>|null $env
     */
    public function __construct(array $command, string $cwd, string $log, ?array $env = null)
    {
        $this->log = $log;
        $process = proc_open($command, [0 => ['file', '/dev/null', 'r'], 1 => ['file', $log, 'a'], 2 => ['file', $log, 'a']], $pipes, $cwd, $env);
        if (!is_resource($process)) {
            throw new \RuntimeException('cannot start ' . implode(' ', $command));
        }
        $this->process = $process;
    }

    public static function freePort(): int
    {
        $server = stream_socket_server('tcp://127.0.0.1:0', $errno, $error);
        if ($server === false) {
            throw new \RuntimeException('no free port: ' . $error);
        }
        $name = (string) stream_socket_get_name($server, false);
        fclose($server);
        return (int) substr($name, strrpos($name, ':') + 1);
    }

    public function waitForPort(int $port, float $seconds = 20.0): void
    {
        $deadline = microtime(true) + $seconds;
        while (microtime(true) < $deadline) {
            if (!proc_get_status($this->process)['running']) {
                throw new \RuntimeException('the process exited: ' . $this->output());
            }
            // A refused connection is the expected answer until the server is up: not a warning.
            set_error_handler(static fn (): bool => true);
            try {
                $socket = stream_socket_client('tcp://127.0.0.1:' . $port, $errno, $error, 0.2);
            } finally {
                restore_error_handler();
            }
            if ($socket !== false) {
                fclose($socket);
                return;
            }
            usleep(100000);
        }
        throw new \RuntimeException('nothing listens on port ' . $port . ': ' . $this->output());
    }

    public function output(): string
    {
        return is_file($this->log) ? (string) file_get_contents($this->log) : '';
    }

    public function stop(): void
    {
        if (proc_get_status($this->process)['running']) {
            proc_terminate($this->process, 15);
            $deadline = microtime(true) + 10;
            while (proc_get_status($this->process)['running'] && microtime(true) < $deadline) {
                usleep(50000);
            }
            if (proc_get_status($this->process)['running']) {
                proc_terminate($this->process, 9);
            }
        }
        proc_close($this->process);
    }
}
