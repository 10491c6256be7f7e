-- What each weather station saw during the journey.
SELECT
    deviceid AS station,
    round(avg(latitude), 4) AS latitude,
    round(avg(longitude), 4) AS longitude,
    count(*) AS reports,
    round(min(temperature), 1) AS min_temp_c,
    round(max(temperature), 1) AS max_temp_c,
    round(max(precipitation), 2) AS max_rain_mm_h,
    count_if(weathercondition = 'Rain') AS rainy_reports
FROM smartcity.weather_data
GROUP BY deviceid
ORDER BY station
